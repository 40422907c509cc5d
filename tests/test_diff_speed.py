"""Word diffs stay fast on long, repetitive outputs (issue 14, finding 4).

A Q2_K that loops repeats one sentence for its whole token budget; difflib's SequenceMatcher
(autojunk off) took 47 s on two such 2,400-word outputs, on every rerun of the Compare page.
"""

from __future__ import annotations

import time

from workbench.quality.diff_html import diff_html
from workbench.quality.diffing import MAX_DIFF_WORDS, word_diff

SENTENCE = "The model keeps repeating the same answer because the sampler found a loop it cannot leave".split()


def looping(n_words: int, changed_at: tuple[int, ...] = ()) -> str:
    """A sentence repeated with small variations (as a looping quantization writes), n_words long."""
    words: list[str] = []
    i = 0
    while len(words) < n_words:
        s = list(SENTENCE)
        if i % 7 == 3:
            s[5] = "very"
        if i % 11 == 5:
            s.insert(8, "again")
        words += s
        i += 1
    words = words[:n_words]
    for pos in changed_at:
        words[pos] = "changed"
    return " ".join(words) + "."


def rebuild(diff) -> tuple[str, str]:
    ref = "".join(text for op, text in diff.segments if op != "insert")
    other = "".join(text for op, text in diff.segments if op != "delete")
    return ref, other


def test_two_looping_2400_word_outputs_diff_fast_and_correctly():
    ref, other = looping(2400), looping(2400, changed_at=(150, 900, 1700, 2300))
    t0 = time.perf_counter()
    d = word_diff(ref, other)
    took = time.perf_counter() - t0
    print(f"\nword_diff on two 2,400-word looping outputs: {took * 1000:.1f} ms")
    assert took < 5  # under a second on a busy 2-core machine; the bound only guards against a regression to 47 s
    assert rebuild(d) == (ref, other)
    assert not d.identical and d.note is None
    assert d.changed_words == 8  # four words replaced: four deleted, four inserted
    assert [text for op, text in d.segments if op == "insert"] == ["changed"] * 4
    assert d.first_divergence_word == 150
    assert d.similarity > 0.99
    assert diff_html(d).count("<ins") == 4


def test_looping_outputs_that_differ_every_few_words_stay_bounded():
    # The old difflib diff took 180 s on this pair (a change every third word), 5 s with one every 40th.
    for every in (40, 3):
        ref, other = looping(2400), looping(2400, changed_at=tuple(range(7, 2400, every)))
        t0 = time.perf_counter()
        d = word_diff(ref, other)
        took = time.perf_counter() - t0
        print(f"\nword_diff, looping outputs with a change every {every} words: {took * 1000:.1f} ms")
        assert took < 5
        assert rebuild(d) == (ref, other)
        assert d.first_divergence_word == 7
    ref = looping(2400)
    other = " ".join(["lorem ipsum dolor sit amet"] * 480)  # two unrelated loops
    t0 = time.perf_counter()
    d = word_diff(ref, other)
    print(f"word_diff on two unrelated 2,400-word loops: {(time.perf_counter() - t0) * 1000:.1f} ms")
    assert time.perf_counter() - t0 < 5
    assert rebuild(d) == (ref, other)


def test_identical_prefix_and_empty_cases():
    assert word_diff("same text.", "same text.").identical
    assert word_diff("", "").identical and word_diff("", "").similarity == 1.0
    d = word_diff("A b c", "A b c d e")  # the other output goes on where the reference stopped
    assert [op for op, _ in d.segments] == ["equal", "insert"] and d.first_divergence_word == 3
    d = word_diff("one two", "")
    assert d.segments == [("delete", "one two")] and d.first_divergence_word == 0 and d.similarity == 0.0


def test_outputs_beyond_the_cap_are_diffed_in_part_and_say_so():
    long_ref = looping(MAX_DIFF_WORDS + 500)
    d = word_diff(long_ref, long_ref + " tail")
    assert d.note and f"first {MAX_DIFF_WORDS:,} words" in d.note
    assert not d.identical
    assert d.note.split(";")[0] in diff_html(d)
    small = word_diff("x y z", "x y w", max_words=2)
    assert small.note and small.identical is False and rebuild(small) == ("x y ", "x y ")
