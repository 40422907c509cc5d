"""Published figures (llama.cpp's LLaMA 3 8b scoreboard) beside measured KLD: the figures as the source prints them,
the lookup by type, and their place, labelled and escaped, in the run report's divergence table."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from workbench.people.report import DIVERGENCE_HEADERS, report_html, report_markdown
from workbench.quality import published as pub
from workbench.quality.published import PUBLISHED_COLUMN, all_published, published_for, published_for_row
from workbench.storage.store import DivergenceRow, Store

# The source's figures for the types of the default ladder, read off the README at the cited commit by hand:
# (mean KLD, PPL, ΔPPL, "Same top p" as a share or None where the source gives none for that type).
EXPECTED = {
    "Q8_0": (0.001355, 6.234284, 0.002650, 0.97674),
    "Q6_K": (0.005452, 6.253382, 0.021748, 0.96031),
    "Q5_K_M": (0.010762, 6.288607, 0.056974, None),
    "Q4_K_M": (0.031273, 6.407115, 0.175482, 0.91901),
    "Q4_0": (0.071940, 6.700147, 0.468514, None),
    "Q3_K_M": (0.101913, 6.888498, 0.656864, None),
    "Q2_K": (0.445132, 9.751568, 3.519934, 0.71138),
}


@pytest.mark.parametrize("quant", sorted(EXPECTED))
def test_figures_are_the_sources_without_importance_matrix(quant: str) -> None:
    f = published_for(quant)
    assert f is not None
    kld, ppl, dppl, top1 = EXPECTED[quant]
    assert (f.mean_kld, f.ppl, f.delta_ppl, f.top1_agreement) == (kld, ppl, dppl, top1)
    assert f.imatrix is None and f.model == "LLaMA-3-8B" and f.dataset == "wikitext-2"
    assert f.source_url.startswith("https://github.com/ggml-org/llama.cpp/blob/")
    assert "/tools/perplexity/README.md" in f.source_url and pub.SOURCE_COMMIT in f.source_url
    assert "another model's figure (LLaMA-3-8B, wikitext-2), for context only" in f.note
    assert "LLaMA 3 8b Scoreboard" in f.source_title


def test_lookup_tolerates_case_and_file_names_and_knows_what_it_does_not_know() -> None:
    q4 = published_for("Q4_K_M")
    assert q4 is not None
    assert published_for("q4_k_m") == q4 == published_for(" Q4_k_M ") == published_for("Llama-3-8B-Instruct-q4_K_M.gguf")
    assert published_for("fp16") == published_for("F16") is not None
    for unknown in ("BF16", "F32", "TQ1_0", "MXFP4", "Q9_K", "", "   ", None, "model.gguf"):
        assert published_for(unknown) is None, unknown
    assert published_for_row("Q4_K_M", is_reference=True) is None  # the reference's own row shows none


def test_types_listed_only_with_an_importance_matrix_say_so() -> None:
    iq4 = published_for("IQ4_XS")
    assert iq4 is not None and iq4.imatrix == "WT 10m" and iq4.mean_kld == 0.036334
    assert "importance matrix" in iq4.note and iq4.top1_agreement is None
    q2ks = published_for("q2_k_s")
    assert q2ks is not None and q2ks.imatrix == "WT 10m" and q2ks.mean_kld == 0.403360
    kld = [f.mean_kld for f in all_published()]
    assert kld == sorted(kld) and len(kld) == 28  # every type the scoreboard lists, once


def test_json_form_is_labelled_published_elsewhere() -> None:
    f = published_for("Q8_0")
    assert f is not None
    j = f.to_json()
    assert j["kind"] == "published elsewhere" and j["mean_kld"] == 0.001355 and j["source_url"] == f.source_url


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []

    def handle_data(self, data):
        self.text.append(data)


HOSTILE = "<script>alert(1)</script>"


def _run_with_divergence(store: Store) -> int:
    run_id = store.create_run(settings={"max_tokens": 8, "n_ctx": 256}, prompt="p", reference_label="F16")
    store.add_result(run_id, 0, {"label": "F16", "quant_type": "F16", "text": "a", "is_reference": True})
    store.add_result(run_id, 1, {"label": HOSTILE, "quant_type": "Q4_K_M", "text": "b"})
    store.add_result(run_id, 2, {"label": "Q2_K", "quant_type": "q2_k", "text": "c"})
    store.finish_run(run_id, "done")
    summary = {"n_tokens": 12, "mean_kld": 0.25, "top1_agreement": 0.75, "ppl": 3.5}
    store.replace_divergence(run_id, "output", "F16", {}, "2026-01-01T00:00:00", [
        DivergenceRow("F16", "F16", "/x/f16.gguf", True, None, {"n_tokens": 12, "mean_kld": 0.0}, {}),
        DivergenceRow(HOSTILE, "Q4_K_M", "/x/q4.gguf", False, None, summary, {}),
        DivergenceRow("Q2_K", "q2_k", "/x/q2.gguf", False, None, {**summary, "mean_kld": 1.5}, {}),
    ])
    return run_id


def test_run_report_divergence_table_sets_published_beside_measured_and_escapes(tmp_path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    run_id = _run_with_divergence(store)
    page = report_html(store, [run_id])
    parser = _Text()
    parser.feed(page)
    text = "".join(parser.text)
    assert "Divergence from the reference" in text
    assert (f"On F16's answer (12 tokens scored), closest to F16 first: {HOSTILE}'s next-token odds moved a lot "
            "(mean KLD 0.250; same next token 75.0% of the time), Q2_K's moved a lot (1.500; 75.0%).") in text
    assert "mean KLD (measured)" in text and f"{PUBLISHED_COLUMN} (published elsewhere)" in text
    table = page.split("<h3>Divergence from the reference</h3>")[1].split("</table>")[0]
    assert "0.2500" in table and "0.0313" in table  # measured 0.25 beside the published 0.031273 (Q4_K_M)
    assert "1.5000" in table and "0.4451" in table  # a lower-case type finds its figure too
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert pub.SOURCE_URL in page and "another model's figure" in text

    md = report_markdown(store, [run_id])
    section = md.split("### Divergence from the reference")[1].split("### Outputs")[0]
    assert "| " + " | ".join(DIVERGENCE_HEADERS[:1]) in section and "(published elsewhere)" in section
    assert "0.0313" in section and "0.4451" in section and HOSTILE not in md
    assert f"<{pub.SOURCE_URL}>" in section
