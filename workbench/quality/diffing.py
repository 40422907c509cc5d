"""Word-level diffs of an output against the reference: segments, per-side spans, and the side-by-side alignment.

Drawing them is quality.diff_html's (escaped HTML and its CSS); where sentences end is quality.sentences'.

Speed: difflib's SequenceMatcher is quadratic-or-worse on long repetitive text (two 2,400-word
looping outputs took 47 s), and diffs are drawn on every rerun of the Compare page. Here tokens
are mapped to ints, the common prefix and suffix are stripped, and the middle is diffed with
Myers' O((N+M)·D) algorithm, which is fast exactly when outputs are long but mostly alike (a
looping quantization beside its reference). When the outputs differ so much that Myers would run
past a fixed work budget, difflib with its popularity heuristic (autojunk) diffs the middle
instead: coarser, but bounded. Beyond MAX_DIFF_WORDS words per side only the first
MAX_DIFF_WORDS words are diffed, and `WordDiff.note` says so.

Two ways to read a diff, drawn by quality.diff_html: `diff_html` interleaves deleted reference words with
inserted ones (every change visible, but the output cannot be read as prose); `prose_html` shows only this
output's own text (`output_spans`) with the changed spans highlighted and the reference's words on hover.
`side_by_side` aligns reference and output by paragraph, then sentence, for close reading.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Literal

from workbench.quality.sentences import paragraphs, sentences

# Words, runs of whitespace, and single punctuation marks: the units a reader notices changing.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)

MAX_DIFF_WORDS = 20_000  # words (not counting whitespace) per side that are diffed; the rest is shown as a note
MYERS_MAX_WORK = 1_000_000  # token comparisons Myers may spend before the bounded fallback takes over


@dataclass
class WordDiff:
    """Segments (op, text) with op in equal / insert / delete; insert is text only in the other output."""

    segments: list[tuple[str, str]] = field(default_factory=list)
    identical: bool = True
    first_divergence_word: int | None = None  # index in the reference's word sequence
    similarity: float = 1.0  # matched tokens / all tokens (difflib's ratio), over the diffed part
    note: str | None = None  # set when the texts were too long to diff whole

    @property
    def changed_words(self) -> int:
        return sum(len([t for t in _TOKEN.findall(text) if not t.isspace()]) for op, text in self.segments if op != "equal")


def split_words(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _cap(tokens: list[str], max_words: int) -> tuple[list[str], bool]:
    """The tokens up to and including the max_words-th word; True when something was cut."""
    words = 0
    for i, t in enumerate(tokens):
        if not t.isspace():
            words += 1
            if words > max_words:
                return tokens[:i], True
    return tokens, False


def _myers(a: list[int], b: list[int], max_work: int) -> list[tuple[int, int, int]] | None:
    """Matching blocks (i, j, size) of a shortest edit script, or None past `max_work` comparisons.

    Myers (1986) greedy forward search; the furthest-reaching x per diagonal is kept for every D,
    but only diagonals -D..D, so memory is O(D²) and D stays small when the texts are alike.
    """
    n, m = len(a), len(b)
    offset = n + m + 1
    v = [0] * (2 * offset + 1)
    trace: list[list[int]] = []
    work = 0
    for d in range(n + m + 1):
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[offset + k - 1] < v[offset + k + 1]):
                x = v[offset + k + 1]
            else:
                x = v[offset + k - 1] + 1
            y = x - k
            x0 = x
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            work += x - x0 + 1
            v[offset + k] = x
            if x >= n and y >= m:
                trace.append(v[offset - d: offset + d + 1])
                return _backtrack(trace, n, m)
        trace.append(v[offset - d: offset + d + 1])
        if work > max_work:
            return None
    return None  # not reached


def _backtrack(trace: list[list[int]], n: int, m: int) -> list[tuple[int, int, int]]:
    blocks: list[tuple[int, int, int]] = []
    x, y = n, m
    for d in range(len(trace) - 1, -1, -1):
        k = x - y
        if d == 0:
            if x > 0:
                blocks.append((0, 0, x))
            break
        prev = trace[d - 1]  # diagonals -(d-1)..(d-1): diagonal kk at index kk + shift
        shift = d - 1
        if k == -d or (k != d and prev[k - 1 + shift] < prev[k + 1 + shift]):
            pk = k + 1
        else:
            pk = k - 1
        px = prev[pk + shift]
        py = px - pk
        sx = px if pk == k + 1 else px + 1  # where the snake on this diagonal starts
        sy = sx - k
        if x > sx:
            blocks.append((sx, sy, x - sx))
        x, y = px, py
    blocks.reverse()
    return blocks


def _matching_blocks(a: list[int], b: list[int]) -> list[tuple[int, int, int]]:
    """Matching blocks (i, j, size), in order, non-overlapping; fast on long, alike, repetitive texts."""
    n, m = len(a), len(b)
    pre = 0
    while pre < n and pre < m and a[pre] == b[pre]:
        pre += 1
    suf = 0
    while suf < n - pre and suf < m - pre and a[n - 1 - suf] == b[m - 1 - suf]:
        suf += 1
    ma, mb = a[pre: n - suf], b[pre: m - suf]
    blocks: list[tuple[int, int, int]] = [(0, 0, pre)] if pre else []
    if ma and mb:
        middle = _myers(ma, mb, MYERS_MAX_WORK)
        if middle is None:  # very different texts: bounded, coarser
            middle = [(blk.a, blk.b, blk.size) for blk in difflib.SequenceMatcher(a=ma, b=mb, autojunk=True).get_matching_blocks()
                      if blk.size]
        blocks += [(i + pre, j + pre, size) for i, j, size in middle]
    if suf:
        blocks.append((n - suf, m - suf, suf))
    return blocks


def _opcodes(n: int, m: int, blocks: list[tuple[int, int, int]]) -> list[tuple[str, int, int, int, int]]:
    ops: list[tuple[str, int, int, int, int]] = []
    i = j = 0
    for bi, bj, size in [*blocks, (n, m, 0)]:
        if i < bi and j < bj:
            ops.append(("replace", i, bi, j, bj))
        elif i < bi:
            ops.append(("delete", i, bi, j, bj))
        elif j < bj:
            ops.append(("insert", i, bi, j, bj))
        if size:
            ops.append(("equal", bi, bi + size, bj, bj + size))
        i, j = bi + size, bj + size
    return ops


def word_diff(reference: str, other: str, max_words: int = MAX_DIFF_WORDS) -> WordDiff:
    a, cut_a = _cap(split_words(reference), max_words)
    b, cut_b = _cap(split_words(other), max_words)
    ids: dict[str, int] = {}
    ia = [ids.setdefault(t, len(ids)) for t in a]
    ib = [ids.setdefault(t, len(ids)) for t in b]
    blocks = _matching_blocks(ia, ib)
    segments: list[tuple[str, str]] = []
    first: int | None = None
    for op, i1, i2, j1, j2 in _opcodes(len(a), len(b), blocks):
        if op == "equal":
            segments.append(("equal", "".join(a[i1:i2])))
            continue
        if first is None:
            first = len([t for t in a[:i1] if not t.isspace()])
        if op in ("delete", "replace"):
            segments.append(("delete", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            segments.append(("insert", "".join(b[j1:j2])))
    total = len(a) + len(b)
    similarity = 2.0 * sum(size for _, _, size in blocks) / total if total else 1.0
    note = None
    if cut_a or cut_b:
        which = "both outputs" if cut_a and cut_b else "the reference" if cut_a else "this output"
        note = (f"only the first {max_words:,} words of each output were diffed ({which} "
                f"{'are' if cut_a and cut_b else 'is'} longer); the rest is not shown here")
    return WordDiff(segments, identical=(reference == other),
                    first_divergence_word=first, similarity=similarity, note=note)


# ---- readable views: this output's own text, the changes marked on it ---------------------------

SpanKind = Literal["equal", "changed", "gap"]
MAX_SIDE_ROWS = 200  # rows of the side-by-side view; beyond them `SideBySide.more` is set and the view says so


@dataclass(frozen=True)
class Span:
    """A stretch of one side's text, in order; the spans of a side concatenate to exactly that side's text.

    equal: the same on both sides. changed: differs; `other` is what the other side had here ("" when it had
    nothing: words only on this side). gap: nothing on this side, the other side had `other` here; drawn as a
    small marker, never as text. `first` marks the first divergence.
    """

    kind: SpanKind
    text: str
    other: str = ""
    first: bool = False


def _collapse(group: list[tuple[str, str, str]]) -> list[Span]:
    """One run of changes (and the plain spaces between them) as spans: whitespace at its edges stays plain."""
    own = "".join(text for _, text, _ in group)
    other = "".join(o for _, _, o in group)
    core = own.strip()
    if not core:  # nothing of this side's own words: plain spacing plus a marker for what the other side had
        spans = [Span("equal", own)] if own else []
        return spans + [Span("gap", "", other.strip() or other)] if other and other != own else spans
    lead = own[: len(own) - len(own.lstrip())]
    trail = own[len(own.rstrip()):]
    return ([Span("equal", lead)] if lead else []) + [Span("changed", core, other.strip())] + (
        [Span("equal", trail)] if trail else [])


def _side_spans(diff: WordDiff, own: str) -> list[Span]:
    """The spans of one side (own = "insert": this output; own = "delete": the reference), in one pass.

    Each change (a delete and/or insert between two equal stretches) becomes one span carrying the other side's
    words. Changes separated only by spaces on one line are read as one ("is to postpone" for "states that no"),
    so a rewritten phrase is one highlight, not one per word.
    """
    items: list[tuple[str, str, str]] = []  # (kind, own text, other text); kind "change" or "equal"
    mine, theirs = "", ""
    pending = False
    for op, text in diff.segments:
        if op == "equal":
            if pending:
                items.append(("change", mine, theirs))
                mine, theirs, pending = "", "", False
            items.append(("equal", text, text))
        else:
            pending = True
            if op == own:
                mine += text
            else:
                theirs += text
    if pending:
        items.append(("change", mine, theirs))
    spans: list[Span] = []
    i = 0
    while i < len(items):
        if items[i][0] == "equal":
            spans.append(Span("equal", items[i][1]))
            i += 1
            continue
        group = [items[i]]
        i += 1
        while (i + 1 < len(items) and items[i][0] == "equal" and items[i][1].isspace() and "\n" not in items[i][1]
               and items[i + 1][0] == "change"):
            group += items[i: i + 2]
            i += 2
        spans += _collapse(group)
    return _mark_first(_join_equal(spans))


def _join_equal(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s in spans:
        if s.kind == "equal" and out and out[-1].kind == "equal":
            out[-1] = Span("equal", out[-1].text + s.text)
        elif s.kind != "equal" or s.text:
            out.append(s)
    return out


def _mark_first(spans: list[Span]) -> list[Span]:
    for i, s in enumerate(spans):
        if s.kind != "equal":
            spans[i] = Span(s.kind, s.text, s.other, first=True)
            break
    return spans


def output_spans(diff: WordDiff) -> list[Span]:
    """This output's text as spans; a changed span's `other` is what the reference had there.

    The spans concatenate to the diffed output exactly (the whole output unless `diff.note` says it was cut).
    """
    return _side_spans(diff, "insert")


def reference_spans(diff: WordDiff) -> list[Span]:
    """The reference's text as spans; a changed span's `other` is what this output had there."""
    return _side_spans(diff, "delete")


# ---- side by side: reference and one output, aligned by paragraph, then sentence ------------------

@dataclass(frozen=True)
class SideRow:
    """One row: the reference's sentence and the output's (either side empty when the other has none here)."""

    kind: Literal["same", "changed", "reference only", "output only"]
    reference: list[Span]
    output: list[Span]
    new_paragraph: bool  # a paragraph starts here on either side


@dataclass
class SideBySide:
    rows: list[SideRow]
    more: bool  # rows were left out beyond max_rows


def _opcodes_of(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """Alignment of two sequences of strings (compared with whitespace normalised) by the Myers diff above."""
    ids: dict[str, int] = {}
    ia = [ids.setdefault(" ".join(x.split()), len(ids)) for x in a]
    ib = [ids.setdefault(" ".join(x.split()), len(ids)) for x in b]
    return _opcodes(len(a), len(b), _matching_blocks(ia, ib))


def _sentences_of(paras: list[str]) -> list[tuple[str, bool]]:
    return [(s, k == 0) for p in paras for k, s in enumerate(sentences(p))]


def _rows_for(a: list[tuple[str, bool]], b: list[tuple[str, bool]], limit: int) -> list[SideRow]:
    """Rows for stretches of sentences: identical sentences align by the diff; the rest pair up in order.

    Stops once past `limit` rows, so a long output costs no more word diffs than the view shows."""
    rows: list[SideRow] = []
    for op, i1, i2, j1, j2 in _opcodes_of([s for s, _ in a], [s for s, _ in b]):
        if len(rows) > limit:
            break
        if op == "equal":
            rows += [SideRow("same", [Span("equal", a[i1 + k][0])], [Span("equal", b[j1 + k][0])],
                             a[i1 + k][1] or b[j1 + k][1]) for k in range(i2 - i1)]
            continue
        for k in range(min(max(i2 - i1, j2 - j1), limit + 1 - len(rows))):
            ra = a[i1 + k] if i1 + k < i2 else None
            rb = b[j1 + k] if j1 + k < j2 else None
            new = bool((ra and ra[1]) or (rb and rb[1]))
            if ra and rb:
                d = word_diff(ra[0], rb[0])
                rows.append(SideRow("changed", reference_spans(d), output_spans(d), new))
            elif ra:
                rows.append(SideRow("reference only", [Span("changed", ra[0])], [], new))
            elif rb:
                rows.append(SideRow("output only", [], [Span("changed", rb[0])], new))
    return rows


def side_by_side(reference: str, output: str, max_rows: int = MAX_SIDE_ROWS) -> SideBySide:
    """Reference and output aligned for close reading: identical paragraphs pair first, then within the rest
    identical sentences pair, and the sentences between them pair in order (the first changed sentence with
    the first, and so on); each changed pair carries a word diff. At most `max_rows` rows (`more` says so)."""
    ref_paras, out_paras = paragraphs(reference), paragraphs(output)
    rows: list[SideRow] = []
    for op, i1, i2, j1, j2 in _opcodes_of(ref_paras, out_paras):
        if len(rows) >= max_rows:
            break
        if op == "equal":
            for p in ref_paras[i1:i2]:
                rows += [SideRow("same", [Span("equal", s)], [Span("equal", s)], k == 0)
                         for k, s in enumerate(sentences(p))]
        else:
            rows += _rows_for(_sentences_of(ref_paras[i1:i2]), _sentences_of(out_paras[j1:j2]), max_rows - len(rows))
    if rows:
        rows[0] = SideRow(rows[0].kind, rows[0].reference, rows[0].output, False)
    return SideBySide(rows[:max_rows], more=len(rows) > max_rows)
