"""Word-level diffs of an output against the reference, and their safe HTML rendering.

Model output is untrusted text: every piece of it is passed through html.escape before it is
wrapped in our own markup, so `<script>` or `<img onerror=…>` in an output shows as text.

Speed: difflib's SequenceMatcher is quadratic-or-worse on long repetitive text (two 2,400-word
looping outputs took 47 s), and diffs are drawn on every rerun of the Compare page. Here tokens
are mapped to ints, the common prefix and suffix are stripped, and the middle is diffed with
Myers' O((N+M)·D) algorithm, which is fast exactly when outputs are long but mostly alike (a
looping quantization beside its reference). When the outputs differ so much that Myers would run
past a fixed work budget, difflib with its popularity heuristic (autojunk) diffs the middle
instead: coarser, but bounded. Beyond MAX_DIFF_WORDS words per side only the first
MAX_DIFF_WORDS words are diffed, and `WordDiff.note` says so.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass, field

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


DIFF_CSS = """
.wb-diff { white-space: pre-wrap; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem;
           line-height: 1.45; padding: 0.5rem; border-radius: 0.4rem; background: rgba(127,127,127,0.06); }
.wb-diff ins { background: rgba(46,160,67,0.25); text-decoration: none; border-bottom: 2px solid #2ea043; }
.wb-diff del { background: rgba(248,81,73,0.22); text-decoration: line-through; color: inherit; }
.wb-diff .wb-first { outline: 2px solid #d29922; outline-offset: 1px; }
.wb-diff .wb-diff-note { font-family: sans-serif; font-size: 0.75rem; color: #868e96; margin-top: 0.4rem; }
.wb-diff .wb-first-label { font-size: 0.7rem; color: #d29922; font-weight: 600; vertical-align: super; }
"""


def diff_html(diff: WordDiff) -> str:
    """The diff as HTML: <ins> for words only in this output, <del> for reference words it lacks.

    The first divergence carries class `wb-first` and a small "first divergence" label.
    """
    parts = ['<div class="wb-diff">']
    marked = False
    for op, text in diff.segments:
        safe = html.escape(text)
        if op == "equal":
            parts.append(safe)
            continue
        cls = ""
        if not marked:
            parts.append('<span class="wb-first-label" title="first divergence from the reference">▼first divergence</span>')
            cls = ' class="wb-first"'
            marked = True
        tag = "ins" if op == "insert" else "del"
        title = "only in this output" if op == "insert" else "in the reference, not in this output"
        parts.append(f'<{tag}{cls} title="{title}">{safe}</{tag}>')
    if diff.note:
        parts.append(f'<div class="wb-diff-note">ℹ️ {html.escape(diff.note)}</div>')
    parts.append("</div>")
    return "".join(parts)


def plain_html(text: str) -> str:
    """Untrusted text as an escaped block, styled like a diff (used for the reference itself)."""
    return f'<div class="wb-diff">{html.escape(text)}</div>'
