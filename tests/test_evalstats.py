"""Pass-rate statistics against published values (Newcombe 1998; Fisher's tea-tasting example)."""

from __future__ import annotations

import pytest

from workbench.quality.evalstats import compare_paired, compare_pass_rates, format_p, newcombe_interval, wilson_interval


@pytest.mark.parametrize(
    ("passed", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Statistics in Medicine 17:857, example (a)
        (15, 148, 0.0624, 0.1605),  # same paper, example (b)
        (0, 20, 0.0, 0.1611),  # example (c)
        (1, 29, 0.0061, 0.1718),  # example (d)
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_known_values(passed: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(passed, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    narrow, wide = wilson_interval(5, 10, 0.80), wilson_interval(5, 10, 0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    with pytest.raises(ValueError):
        wilson_interval(1, 10, confidence=1.5)


def test_newcombe_known_value() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a), method 10: 56/70 vs 48/80.
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)


def test_fisher_tea_tasting() -> None:
    c = compare_pass_rates(3, 4, 1, 4)
    assert c.p_value == pytest.approx(0.4857, abs=1e-4)
    assert c.method == "fisher" and not c.significant


def test_within_noise_sentence() -> None:
    c = compare_pass_rates(3, 10, 5, 10, label_a="Q2_K", label_b="Q8_0", task="math")
    assert c.p_value == pytest.approx(0.6499, abs=1e-4)
    assert c.sentence == "Q2_K vs Q8_0 on math: 3/10 vs 5/10 — within noise (p=0.65)"
    assert str(c) == c.sentence
    assert c.diff == pytest.approx(-0.2) and c.rate_a == 0.3 and c.rate_b == 0.5


def test_beyond_noise_sentence() -> None:
    c = compare_pass_rates(1, 20, 15, 20, label_a="Q2_K", label_b="Q8_0")
    assert c.significant and c.p_value < 0.001
    assert c.sentence == "Q2_K vs Q8_0: 1/20 vs 15/20 — Q8_0 passes more, beyond noise (p<0.001)"
    low, high = c.diff_interval
    assert low < c.diff < high < 0


def test_no_cases() -> None:
    c = compare_pass_rates(0, 0, 3, 10)
    assert c.p_value == 1.0 and not c.significant and c.sentence.endswith("no cases to compare")


def test_paired_mcnemar_exact() -> None:
    a = [True] * 6 + [False] * 4
    b = [False] * 6 + [False] * 4
    c = compare_paired(a, b, label_a="Q8_0", label_b="Q2_K", task="code")
    # 6 discordant cases, all favouring A: two-sided binomial p = 2 / 2**6
    assert c.p_value == pytest.approx(2 / 64)
    assert c.method == "mcnemar-exact" and c.significant
    assert c.sentence == "Q8_0 vs Q2_K on code: 6/10 vs 0/10 — Q8_0 passes more, beyond noise (p=0.03)"


def test_pairing_helps_when_contestants_agree_on_most_cases() -> None:
    # 20 cases; B passes 7, all of which A also passes; A passes 7 more. Only 7 discordant cases.
    a = [True] * 14 + [False] * 6
    b = [True] * 7 + [False] * 13
    paired = compare_paired(a, b)
    assert paired.p_value == pytest.approx(2 / 2**7)
    assert paired.significant
    unpaired = compare_pass_rates(14, 20, 7, 20)
    assert unpaired.p_value > 0.05 and not unpaired.significant


def test_paired_identical_and_mismatched() -> None:
    assert compare_paired([True, False], [True, False]).p_value == 1.0
    with pytest.raises(ValueError, match="same cases"):
        compare_paired([True], [True, False])


@pytest.mark.parametrize(
    ("p", "text"), [(0.6499, "p=0.65"), (0.0123, "p=0.01"), (0.0042, "p=0.004"), (0.0004, "p<0.001"), (1.0, "p=1.00")]
)
def test_format_p(p: float, text: str) -> None:
    assert format_p(p) == text
