"""The Quality and Evals pages in Streamlit's headless AppTest, on the real embedded ladder."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from workbench.quality import divergence as dv
from workbench.runs.contestants import Contestant, RunSettings
from workbench.storage.store import Store

APP = str(Path(__file__).resolve().parents[1] / "app.py")
HOSTILE = "<script>alert('boom')</script> Then <b>bold</b> & done."


def html_of(at: AppTest) -> str:
    return " ".join(h.proto.body for h in at.get("html"))


def test_quality_page_draws_an_escaped_heatmap_for_a_real_run(pool, demo_ladder):
    """A stored run whose reference output carries markup: the heatmap draws it as text, never as HTML."""
    store = Store()
    f16, q2 = demo_ladder.reference, demo_ladder.by_label("Q2_K")
    settings = RunSettings(max_tokens=32, n_ctx=512)
    ref = Contestant(f16.label, f16.path, f16.quant_type, is_reference=True)
    tokens = dv._tokenize(pool, ref, settings, text=HOSTILE)
    messages = settings.messages("Repeat this exactly.")
    run_id = store.create_run(settings=settings.to_dict(), prompt="Repeat this exactly.", messages=messages,
                              ladder=demo_ladder.to_dict(), reference_label="F16")
    store.add_result(run_id, 0, {"label": "F16", "quant_type": "F16", "file": f16.path, "is_reference": True,
                                 "text": HOSTILE, "token_ids": tokens, "stop_reason": "max_tokens"})
    store.add_result(run_id, 1, {"label": "Q2_K", "quant_type": "Q2_K", "file": q2.path, "is_reference": False,
                                 "text": "whatever", "token_ids": [1, 2], "stop_reason": "max_tokens"})
    store.finish_run(run_id, "done")
    report = dv.diverge_run(pool, store, run_id)  # teacher-forces the markup through F16 and Q2_K
    assert "".join(report.reference.piece(t) for t in report.reference.tokens) == HOSTILE

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["run_id"] = run_id
    at.switch_page("pages/quality.py")
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Quality: divergence from the reference"
    assert at.selectbox(key="quality-run-pick").value == run_id
    assert at.selectbox(key=f"quality-{run_id}-heat-pick").value == "Q2_K"
    body = html_of(at)
    heat = body.split('<div class="wb-heat">')[1]
    assert heat.count('<span class="t') == report.n_tokens
    assert "<script" not in body and "<b>" not in body  # never markup from the model
    assert "&lt;" in heat and "&gt;" in heat and "&amp;" in heat  # drawn as text instead
    assert "would say:" in heat  # hover text with the alternatives
    summary = next(d.value for d in at.dataframe if "mean KLD" in d.value.columns)
    assert list(summary["quantization"]) == ["F16 (reference)", "Q2_K"]
    assert summary["mean KLD"].iloc[1] > 0
    published = summary["Published (LLaMA-3-8B) mean KLD"]  # beside the measured figure, for the same type
    assert published.iloc[1] == 0.445132 and published.isna().iloc[0]  # none beside the reference itself
    assert any("published elsewhere, not measured here" in c.value and "ggml-org/llama.cpp" in c.value
               for c in at.caption)

    # The Compare page's stored-run section carries the same panel, collapsed.
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["run_id"] = run_id
    at.run()
    assert not at.exception, at.exception
    assert any(e.label == "Divergence from the reference" for e in at.expander)
    assert '<div class="wb-heat">' in html_of(at)


def test_evals_page_refuses_a_malformed_upload_with_file_line_and_reason(demo_ladder):
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/evals.py")
    at.run()
    assert not at.exception, at.exception
    at.radio(key="evals-source").set_value("Upload TOML or CSV")
    at.run()
    bad_toml = ('name = "Broken"\n\n[[cases]]\nid = "a"\ncategory = "cooking"\nprompt = "Hi"\n'
                'check = { kind = "contains", expected = "x" }\n')
    at.file_uploader(key="evals-upload").set_value(("broken.toml", bad_toml.encode(), "application/toml"))
    at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("broken.toml" in e and "line 5" in e and "unknown category" in e for e in errors), errors
    assert not any(b.label == "Run eval" for b in at.button)  # nothing to run from a refused pack

    bad_csv = "prompt,category,checker,expected\nWhat is 2+2?,math,number,4\nName a colour,classification,sometimes,red\n"
    at.file_uploader(key="evals-upload").set_value(("mine.csv", bad_csv.encode(), "text/csv"))
    at.run()
    errors = [e.value for e in at.error]
    assert any("mine.csv" in e and "line 3" in e and "unknown checker kind" in e for e in errors), errors

    good_csv = "prompt,category,checker,expected\nWhat is 2+2?,math,number,4\n"
    at.file_uploader(key="evals-upload").set_value(("mine.csv", good_csv.encode(), "text/csv"))
    at.run()
    assert not at.error
    assert any(b.label == "Run eval" for b in at.button)
