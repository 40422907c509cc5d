"""Model output is untrusted: wherever it becomes HTML it is escaped, and it never runs."""

from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

from workbench.quality.diff_html import diff_html, plain_html
from workbench.quality.diffing import word_diff
from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")
HOSTILE = ('Sure! <script>alert("x")</script> <img src=x onerror="alert(1)"> '
           '[click me](javascript:alert(2)) <b>bold</b>')


def test_diff_and_plain_html_escape_markup():
    for html in (diff_html(word_diff("A harmless answer.", HOSTILE)), plain_html(HOSTILE)):
        assert "<script" not in html and "<img" not in html and "<b>" not in html
        assert "&lt;script&gt;" in html and "&lt;img" in html
        assert 'href="javascript' not in html


def _stored_hostile_run() -> int:
    store = Store()
    run_id = store.create_run(settings={"max_tokens": 8, "temperature": 0.0, "seed": 0, "n_ctx": 256, "n_threads": 1},
                              prompt="say something", reference_label="F16")
    for i, (label, text) in enumerate([("F16", "A harmless answer."), ("Q2_K", HOSTILE)]):
        store.add_result(run_id, i, {"label": label, "quant_type": label, "file": f"/x/{label}.gguf",
                                     "is_reference": label == "F16", "text": text, "stop_reason": "eos",
                                     "token_ids": [1, 2, 3] if label == "F16" else [1, 5]})
    return run_id


def compare_page_with_run(run_id: int) -> AppTest:
    """The Compare page, run once, showing stored run `run_id`; it must not raise."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["run_id"] = run_id
    at.run()
    assert not at.exception, at.exception
    return at


def test_compare_page_shows_hostile_output_as_text():
    at = compare_page_with_run(_stored_hostile_run())
    bodies = " ".join(h.proto.body for h in at.get("html"))
    assert "&lt;script&gt;alert" in bodies and "&lt;img src=x onerror=" in bodies
    assert "<script>alert" not in bodies and "<img src=x" not in bodies
    markdown = " ".join(m.value for m in at.markdown)
    assert "javascript:" not in markdown  # no element rendered the link as Markdown


# ---- values other than model text: from endpoints, imports and the database (issue 14) ---------------------------
EVIL_LABEL = "Q2 <img src=http://evil.example/l.png> ![l](http://evil.example/l.png) [l](http://evil.example/)"
EVIL_STYLE = "<style>body{display:none}</style>"
EVIL_ERROR = "<script>alert(1)</script> ![e](http://evil.example/e.png) :red[**alarm**]"


def hostile_result_run(store: Store | None = None) -> int:
    """A stored comparison whose every non-text field is hostile, as an endpoint or an imported file could make it."""
    store = store or Store()
    run_id = store.create_run(
        settings={"max_tokens": "<img src=http://evil.example/s.png>", "temperature": 0.0, "seed": 0, "n_ctx": 256,
                  "n_threads": 1},
        prompt=f"![p](http://evil.example/p.png) {EVIL_STYLE} [go](http://evil.example/)",
        reference_label="F16 ![r](http://evil.example/r.png)", category="<style>*{color:red}</style>")
    rows = [
        {"label": "F16 ![r](http://evil.example/r.png)", "quant_type": EVIL_STYLE, "file": "/x/<img src=evil>.gguf",
         "is_reference": True, "text": "A harmless answer.", "stop_reason": EVIL_STYLE, "token_ids": [1, 2, 3],
         "completion_tokens": "lots<style>body{display:none}</style>", "gpu_layers": "<img src=http://evil.example/g.png>",
         "ttft_s": "<b>fast</b>", "size_bytes": "<img src=http://evil.example/z.png>", "load_s": "1s",
         "fallback": "![f](http://evil.example/f.png) <img src=http://evil.example/f.png>",
         "metrics": {"warm": False, "settings": {"n_layers": "<img src=evil>"}}},
        {"label": EVIL_LABEL, "quant_type": "Q2_K", "file": "/x/q2.gguf", "is_reference": False,
         "text": "A different answer.", "stop_reason": EVIL_STYLE, "token_ids": [1, 5], "completion_tokens": 2,
         "decode_tok_s": "<style>", "bits_per_weight": "x"},
        {"label": "remote <style>body{display:none}</style>", "quant_type": None, "file": "http://evil.example/",
         "is_reference": False, "text": "", "stop_reason": "error", "error": EVIL_ERROR},
    ]
    for i, r in enumerate(rows):
        store.add_result(run_id, i, r)
    return run_id


def _markdown_bodies(at: AppTest) -> list[str]:
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "toast", "subheader", "title"):
        out += [str(e.value) for e in at.get(kind)]
    out += [str(b.label) for b in at.button]
    return out


def test_compare_page_escapes_every_hostile_value_of_a_stored_run():
    at = compare_page_with_run(hostile_result_run())
    bodies = " ".join(h.proto.body for h in at.get("html"))
    assert "A harmless answer." in bodies  # the run is shown
    for raw in ("<style>body", "<style>*", "<img", "<script", "<b>fast"):
        assert raw not in bodies, raw
    assert "&lt;style&gt;body{display:none}&lt;/style&gt;" in bodies  # shown as text
    md = _markdown_bodies(at)
    joined = "\n".join(md)
    assert "evil.example" in joined  # the values are on the page (escaped), not dropped
    for text in md:
        assert not re.search(r"(?<!\\)\]\(", text), text  # no Markdown link or image
        assert not re.search(r"(?<!\\)<(img|style|script)", text), text  # no raw HTML
        assert ":red" not in text, text  # no colour directive (broken by a word joiner)
        assert not re.search(r"https?://", text), text  # no bare link (escaped as http\://)
