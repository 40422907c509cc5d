"""The sentence that leads a divergence result ranks the quantizations and says how far each moved."""

from workbench.people.divergence_words import ranking_sentence
from workbench.quality.divergence import ContestantDivergence, DivergenceReport


def _result(label: str, kld: float | None, top1: float = 0.9, error: str | None = None) -> ContestantDivergence:
    summary = {} if kld is None else {"n_tokens": 100, "mean_kld": kld, "top1_agreement": top1}
    return ContestantDivergence(label=label, quant_type=label, file=f"/m/{label}.gguf", is_reference=False,
                                tokens=list(range(100)), summary=summary, error=error)


def _report(source: str, *results: ContestantDivergence) -> DivergenceReport:
    ref = ContestantDivergence(label="F16", quant_type="F16", file="/m/F16.gguf", is_reference=True,
                               tokens=list(range(1530)), summary={"n_tokens": 1530, "mean_kld": 0.0})
    return DivergenceReport(run_id=1, source=source, reference_label="F16", results=[ref, *results])


def test_closest_first_with_words_and_figures():
    report = _report("text", _result("Q2_K", 0.397, 0.641), _result("Q8_0", 0.0037, 0.941),
                     _result("Q5_K_M", 0.081, 0.822))
    assert ranking_sentence(report) == (
        "On the bundled text (1,530 tokens scored), closest to F16 first: Q8_0's next-token odds barely moved "
        "(mean KLD 0.0037; same next token 94.1% of the time), Q5_K_M's moved a little (0.081; 82.2%), "
        "Q2_K's moved a lot (0.397; 64.1%).")


def test_a_failed_quantization_is_named_with_its_reason_and_one_left_reads_alone():
    report = _report("output", _result("Q4_K_M", 0.05, 0.88), _result("Q2_K", None, error="worker died\n(SIGSEGV)"))
    sentence = ranking_sentence(report)
    assert sentence.startswith("On F16's answer (1,530 tokens scored), against F16: Q4_K_M's next-token odds moved "
                               "a little (mean KLD 0.050; same next token 88.0% of the time).")
    assert sentence.endswith(" Q2_K could not be measured (worker died (SIGSEGV)).")


def test_nothing_measured_says_so():
    assert ranking_sentence(_report("text", _result("Q2_K", None, error="x" * 500))).startswith(
        "No quantization could be measured against F16 on the bundled text. Q2_K could not be measured (xxx")
    assert len(ranking_sentence(_report("text", _result("Q2_K", None, error="x" * 500)))) < 250


def test_figures_of_the_wrong_type_from_the_database_count_as_not_measured():
    odd = _result("Q4_K_M", 0.05)
    odd.summary["n_tokens"] = "12"
    nan = _result("Q2_K", float("nan"))
    sentence = ranking_sentence(_report("text", odd, nan, _result("Q8_0", 0.004, 0.95)))
    assert sentence.startswith("On the bundled text (1,530 tokens scored), against F16: Q8_0's next-token odds")
    assert "Q4_K_M could not be measured (no tokens scored)." in sentence
    assert "Q2_K could not be measured" in sentence
