"""One line per column, in words: how a quantization's output stands against the reference.

"39 words differ" says little to a product person; "same answer, 3 words differ" or "different
answer from sentence 2; 2 facts changed" says what to look at. The line is built from the word
diff (diffing.word_diff) and the changed facts (facts.compare_facts), by these rules:

  identical                                  the texts are equal
  same words, spacing differs                no word differs, only whitespace
  same answer, N words differ                similarity ≥ SAME_ANSWER (0.9)
  same answer worded differently (82% similar)   similarity ≥ REWORDED (0.7)
  different answer from sentence K           below that; K is the reference sentence holding the
                                             first divergence (sentences end as quality.sentences says)
  "; N facts changed" is appended whenever facts changed, whatever the wording.

Why these thresholds: similarity is difflib's ratio over tokens (words, punctuation, spaces), so
0.9 leaves room for a handful of swapped words in a paragraph and nothing more: the reader sees the
same text. The ratio has a high floor, because spaces and common words match anywhere: two
unrelated English sentences of similar length score about 0.48, and an answer that keeps its
first sentence and then wanders off scores about 0.6. So 0.7 is where "the same answer in other
words" ends; below it greedy decoding took another path at the first divergence, and the sentence
where that happened is the useful pointer. They are judgement calls from such examples (see
tests/test_summary.py), not calibrated on a data set; the numbers behind the words come with the line.
Facts are counted separately because a single changed number ("20 minutes → 2 minutes") can
leave a text 99% similar and still be the difference that matters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.core.text_units import counted
from workbench.quality.diffing import WordDiff, split_words, word_diff
from workbench.quality.facts import FactChange, compare_facts
from workbench.quality.sentences import text_sentences

# What each verdict means when a set of prompts is counted: the three groups reports and verdicts use.
GROUPS = {"identical": "identical", "spacing": "identical", "same": "same answer", "reworded": "same answer",
          "different": "different answer", "empty": "different answer"}

SAME_ANSWER = 0.9  # similarity at or above which the answer reads as the same text
REWORDED = 0.7  # similarity at or above which it is the same answer in other words


@dataclass(frozen=True)
class ColumnSummary:
    """The line, and the numbers it was made from."""

    sentence: str
    verdict: str  # identical | spacing | same | reworded | different | empty
    changed_words: int
    similarity: float
    first_divergence_word: int | None
    first_divergence_sentence: int | None  # 1-based, in the reference
    facts: list[FactChange] = field(default_factory=list)

    @property
    def facts_changed(self) -> int:
        return len(self.facts)


def sentence_of_word(text: str, word_index: int) -> int:
    """The 1-based sentence of `text` (quality.sentences' rule, the side-by-side view's) holding its word_index-th
    word (words as diffing counts them: every token that is not whitespace, punctuation included); past the end,
    the last sentence."""
    seen = 0
    all_sentences = text_sentences(text)
    for number, sentence in enumerate(all_sentences, start=1):
        seen += sum(1 for token in split_words(sentence) if not token.isspace())
        if word_index < seen:
            return number
    return max(1, len(all_sentences))


def summarize(reference: str, output: str, diff: WordDiff | None = None,
              facts: list[FactChange] | None = None) -> ColumnSummary:
    """The column's line; pass `diff` or `facts` when already computed to save the work."""
    d = diff if diff is not None else word_diff(reference, output)
    changes = facts if facts is not None else compare_facts(reference, output)
    sentence_no = (None if d.first_divergence_word is None
                   else sentence_of_word(reference, d.first_divergence_word))
    if d.identical:
        verdict, line = "identical", "identical"
    elif not output.strip():
        verdict, line = "empty", "empty output"
    elif d.changed_words == 0:
        verdict, line = "spacing", "same words, spacing differs"
    elif d.similarity >= SAME_ANSWER:
        n = d.changed_words
        verdict, line = "same", f"same answer, {counted(n, 'word')} differ{'s' if n == 1 else ''}"
    elif d.similarity >= REWORDED:
        verdict, line = "reworded", f"same answer worded differently ({100 * d.similarity:.0f}% similar)"
    else:
        verdict, line = "different", f"different answer from sentence {sentence_no or 1}"
    if changes:
        line += f"; {counted(len(changes), 'fact')} changed"
    return ColumnSummary(line, verdict, d.changed_words, d.similarity, d.first_divergence_word, sentence_no,
                         list(changes))
