"""Which quantization is this endpoint? Against a real llama-cpp-python server serving the demo Q4_K_M.

The evidence that separates files is the log-probability comparison (the endpoint's top-k vs each
local file's, teacher-forced on the endpoint's output); greedy agreement backs it up. The tests
assert what holds on the real tiny model: Q4_K_M is closest by a wide KLD margin and by greedy
agreement, and every run is kept so a change of answer shows.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_remote import FakeServer, endpoint, free_port, llama_server  # noqa: F401 (fixture)

from workbench.cli.main import main
from workbench.runs.contestants import RunSettings
from workbench.runs.fingerprint import (
    REFERENCE_PROMPTS,
    Candidate,
    _rank,
    align_positions,
    fingerprint,
    greedy_agreement,
    history,
    paired_bootstrap,
    topk_kld,
)
from workbench.runs.remote import TokenLogprobs
from workbench.storage.store import Store

PLAIN_GREEDY = {"repeat_penalty": 1.0}  # llama-cpp-python's server adds a 1.1 repeat penalty otherwise
# One thread: on a small shared machine, llama.cpp's spinning thread barriers stall badly when oversubscribed.
ONE_THREAD = RunSettings(n_ctx=1024, n_threads=1)


# ---- the pieces ------------------------------------------------------------------------------------
def test_alignment_kld_and_agreement_helpers():
    assert align_positions(["A", " b", "c"], ["A", " b", "c"]) == [(0, 0), (1, 1), (2, 2)]
    # the local tokenizer split " bc" differently: only positions with the same text before them pair up
    assert align_positions(["A", " bc", "!"], ["A", " b", "c", "!"]) == [(0, 0), (2, 3)]
    assert greedy_agreement([1, 2, 3, 4], [1, 2, 9, 9]) == 0.5 and greedy_agreement([], []) == 1.0

    same = TokenLogprobs("a", -0.5, [("a", -0.5), ("b", -1.5), ("c", -2.5)])
    pieces = {"1": "a", "2": "b", "3": "c", "4": "d"}
    kld, top1 = topk_kld(same, [[1, -0.5], [2, -1.5], [3, -2.5], [4, -3.0]], pieces)
    assert kld == pytest.approx(0.0, abs=1e-12) and top1
    shifted, top1 = topk_kld(same, [[2, -0.5], [1, -1.5], [3, -2.5]], pieces)
    assert shifted > 0.1 and not top1
    by_id = TokenLogprobs("a", -0.5, [("a", -0.5), ("b", -1.5)], id=1, top_ids=[1, 2])
    assert topk_kld(by_id, [[1, -0.5], [2, -1.5]], {})[0] == pytest.approx(0.0, abs=1e-12)

    assert paired_bootstrap([0.1] * 6, [0.5] * 6, lower_is_better=True) == 1.0
    rng = np.random.default_rng(1)
    noisy = rng.normal(0.1, 0.05, 6)
    assert 0.05 < paired_bootstrap(list(noisy), list(noisy[::-1]), lower_is_better=True) < 0.95


def test_rank_says_within_noise_and_when_evidence_is_weaker():
    def cand(label: str, klds: list[float]) -> Candidate:
        c = Candidate(label, label, 4.5, greedy_agreement=0.9, kld=float(np.mean(klds)), top1_agreement=0.95)
        c.per_prompt = [{"kld": k, "greedy_agreement": 0.9} for k in klds]
        return c

    cs = [cand("Q5_K_M", [0.011, 0.009, 0.012, 0.010, 0.02, 0.01]),
          cand("Q4_K_M", [0.010, 0.010, 0.011, 0.011, 0.01, 0.012]),
          cand("Q2_K", [0.3, 0.2, 0.4, 0.3, 0.35, 0.25])]
    closest, sentence = _rank(cs, "logprobs")
    assert closest == "Q4_K_M" and sentence.startswith("Closest to Q4_K_M; Q5_K_M within noise")
    assert [c.label for c in cs] == ["Q4_K_M", "Q5_K_M", "Q2_K"] and cs[1].within_noise and not cs[2].within_noise

    g = [Candidate("Q8_0", "Q8_0", 8.5, greedy_agreement=0.2), Candidate("Q4_K_M", "Q4_K_M", 4.9, greedy_agreement=0.3)]
    for c, v in zip(g, ([0.2] * 3, [0.3] * 3), strict=True):
        c.per_prompt = [{"greedy_agreement": x} for x in v]
    closest, sentence = _rank(g, "greedy")
    assert closest == "Q4_K_M" and sentence.startswith("Weaker evidence: the endpoint returned no log-probabilities")
    assert "No ladder file matches closely" in sentence and "bootstrap says little" in sentence


# ---- against the real server ------------------------------------------------------------------------
@pytest.mark.slow
def test_fingerprint_ranks_the_served_file_first(demo_ladder, pool, llama_server, tmp_path):  # noqa: F811
    ep = endpoint(llama_server, extra_body=PLAIN_GREEDY)
    prompts = list(REFERENCE_PROMPTS[:4])
    report = fingerprint(pool, ep, demo_ladder, prompts, max_tokens=32, settings=ONE_THREAD)
    elsewhere = Store(tmp_path / "elsewhere.sqlite3")  # a store handed in keeps the history: the default is untouched
    again = fingerprint(pool, ep, demo_ladder, prompts[:1], max_tokens=8, settings=ONE_THREAD, store=elsewhere)
    assert again.ok and len(history(ep, elsewhere)) == 1
    assert report.ok, report.error
    assert report.method == "logprobs" and report.notes == []
    by = {c.label: c for c in report.candidates}
    assert set(by) == set(demo_ladder.labels()) and all(c.error is None for c in report.candidates)
    assert report.closest == "Q4_K_M" == report.candidates[0].label
    best, others = by["Q4_K_M"], [c for c in report.candidates if c.label != "Q4_K_M"]
    # the served file is closest by a wide margin, on every prompt, for every rival
    assert all(best.kld < 0.5 * o.kld for o in others), [(c.label, c.kld) for c in report.candidates]
    assert not any(o.within_noise for o in others) and min(best.wins_over.values()) >= 0.95
    assert best.greedy_agreement == max(c.greedy_agreement for c in report.candidates)
    assert best.top1_agreement >= 0.85 and best.aligned_positions >= 40
    assert report.confidence.startswith("Closest to Q4_K_M (mean top-5 KLD")
    assert report.candidates[-1].label == "Q2_K"  # the coarsest file is the farthest
    saved = history(ep)
    assert len(saved) == 1 and saved[0]["closest"] == "Q4_K_M" and saved[0]["endpoint"]["base_url"] == llama_server
    assert json.dumps(saved[0])  # plain JSON, readable by other tools
    assert all(math.isfinite(c["kld"]) for c in saved[0]["candidates"])


@pytest.mark.slow
def test_cli_fingerprint_exit_codes_follow_the_closest_match(llama_server, tmp_path, capsys):  # noqa: F811
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Name three colours.\nWhat do bees make?\n")
    base = ["fingerprint", "--endpoint", llama_server, "--model", "cli-check", "--demo", "--prompts", str(prompts),
            "--max-tokens", "16", "--ctx", "512", "--threads", "1", "--extra", json.dumps(PLAIN_GREEDY)]
    assert main(base + ["--types", "Q4_K_M,Q2_K", "--json"]) == 0  # first run
    first = json.loads(capsys.readouterr().out)
    assert first["closest"] == "Q4_K_M" and first["previous_closest"] is None
    assert main(base + ["--types", "Q4_K_M,Q2_K"]) == 0  # unchanged
    out = capsys.readouterr().out
    assert "Unchanged since the previous fingerprint (Q4_K_M)" in out and "top-k KLD" in out
    assert main(base + ["--types", "Q2_K"]) == 1  # the closest match changed
    assert "CHANGED: the previous fingerprint of this endpoint was closest to Q4_K_M" in capsys.readouterr().out

    assert main(["fingerprint", "--endpoint", llama_server, "--demo", "--extra", "{nope"]) == 2
    assert main(["fingerprint", "--endpoint", "localhost:8080", "--demo"]) == 2
    assert main(["fingerprint", "--endpoint", llama_server, "--demo", "--types", "Q9_X"]) == 2
    assert main(["fingerprint", "--endpoint", llama_server]) == 2  # neither --ladder nor --demo
    assert main(["fingerprint", "--endpoint", llama_server, "--ladder", str(tmp_path)]) == 2  # no ladder.json
    capsys.readouterr()
    assert main(["fingerprint", "--endpoint", f"http://127.0.0.1:{free_port()}", "--demo"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: could not connect") and "connection refused" in err[-1]
    assert len(err) == 2  # one progress line, one error line: a refused endpoint is not asked eight times


def test_without_logprobs_the_answer_is_greedy_only_and_says_so(demo_ladder, pool):
    fake = FakeServer("no_logprobs")
    try:
        ep = endpoint(fake.url, label="no-logprobs")
        report = fingerprint(pool, ep, demo_ladder, ["What is the capital of France?"], max_tokens=8,
                             settings=ONE_THREAD, labels=["Q8_0", "Q4_K_M"], save=False)
    finally:
        fake.stop()
    assert report.ok, report.error
    assert report.method == "greedy" and all(c.kld is None for c in report.candidates)
    assert any("refused log-probabilities" in n for n in report.notes)
    assert report.confidence.startswith("Weaker evidence: the endpoint returned no log-probabilities")
    assert history(ep) == []  # save=False keeps nothing
