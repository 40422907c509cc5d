"""Model output is untrusted: wherever it becomes HTML it is escaped, and it never runs."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from workbench.diffing import diff_html, plain_html, word_diff
from workbench.store import Store

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


def test_compare_page_shows_hostile_output_as_text():
    run_id = _stored_hostile_run()
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["run_id"] = run_id
    at.run()
    assert not at.exception, at.exception
    bodies = " ".join(h.proto.body for h in at.get("html"))
    assert "&lt;script&gt;alert" in bodies and "&lt;img src=x onerror=" in bodies
    assert "<script>alert" not in bodies and "<img src=x" not in bodies
    markdown = " ".join(m.value for m in at.markdown)
    assert "javascript:" not in markdown  # no element rendered the link as Markdown
