"""The token heatmap: the reference's text drawn token by token, each shaded by one contestant's KLD.

Why a heatmap: a mean KLD says *how much* a quantization drifts; the heatmap shows *where*. Each
token of the reference output is a span whose red shade grows with KL(reference || contestant) at
that position (a log scale from 0.01 to 2 nats, see `kld_alpha`), tokens where the contestant's
top-1 choice differs are underlined, and hovering shows the contestant's top alternatives with
their probabilities next to the reference's own.

All model text is untrusted: every piece and every alternative is `html.escape`d, attributes
included, so an output containing `<script>` is drawn as text.
"""

from __future__ import annotations

import html
import math

from workbench.quality.divergence import ContestantDivergence, DivergenceReport

KLD_LOW = 0.01  # below this a token is unshaded (Q8_0's typical per-token KLD)
KLD_HIGH = 2.0  # at or above this a token is fully shaded

HEATMAP_CSS = """
.wb-heat { white-space: pre-wrap; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.85rem;
           line-height: 1.9; padding: 0.5rem; border-radius: 0.4rem; background: rgba(127,127,127,0.06);
           word-break: break-word; }
.wb-heat .t { border-radius: 3px; cursor: help; }
.wb-heat .t.dis { text-decoration: underline; text-decoration-color: #7c2d12; text-decoration-thickness: 2px;
                  text-underline-offset: 3px; }
.wb-heat-legend { font-size: 0.75rem; color: #666; margin: 0.3rem 0; }
.wb-heat-legend .t { padding: 0 0.4rem; border-radius: 3px; margin-right: 0.2rem; }
"""


def kld_alpha(kld: float | None) -> float:
    """Shade strength 0..1: 0 below KLD_LOW, 1 at KLD_HIGH and above, log-linear between."""
    if kld is None or not math.isfinite(kld) or kld <= KLD_LOW:
        return 0.0
    if kld >= KLD_HIGH:
        return 1.0
    return math.log(kld / KLD_LOW) / math.log(KLD_HIGH / KLD_LOW)


def _colour(kld: float | None) -> str:
    a = kld_alpha(kld)
    return f"rgba(220,38,38,{0.08 + 0.72 * a:.3f})" if a > 0 else "transparent"


def _show(piece: str) -> str:
    """A token's text as it should appear in a tooltip (whitespace made visible)."""
    return piece.replace("\n", "↵").replace("\t", "⇥") if piece.strip() else repr(piece)


def _alternatives(entry: ContestantDivergence, i: int, n: int = 5) -> str:
    if i >= len(entry.top):
        return "-"
    return ", ".join(f"{_show(entry.piece(int(t)))!s} {math.exp(lp):.1%}" for t, lp in entry.top[i][:n])


def tooltip(report: DivergenceReport, contestant: ContestantDivergence, i: int) -> str:
    """The hover text of token i (plain text; escaped by the caller)."""
    ref = report.reference
    tok = ref.tokens[i]
    piece = _show(ref.piece(tok))
    p = math.exp(contestant.logprobs[i]) if i < len(contestant.logprobs) else float("nan")
    p_ref = math.exp(ref.logprobs[i]) if i < len(ref.logprobs) else float("nan")
    kld = contestant.kld[i] if contestant.kld is not None and i < len(contestant.kld) else None
    agree = contestant.agree[i] if contestant.agree is not None and i < len(contestant.agree) else True
    lines = [
        f"token {i + 1}: {piece}",
        f"KLD {kld:.4f} nats" + ("" if agree else f" · {contestant.label}'s top choice differs") if kld is not None
        else "reference",
        f"p({piece}): {contestant.label} {p:.1%}, {report.reference_label} {p_ref:.1%}",
        f"{contestant.label} would say: {_alternatives(contestant, i)}",
    ]
    if not contestant.is_reference:
        lines.append(f"{report.reference_label} would say: {_alternatives(ref, i)}")
    return "\n".join(lines)


def heatmap_html(report: DivergenceReport, label: str, start: int = 0, end: int | None = None,
                 with_css: bool = True) -> str:
    """Tokens start..end of the reference's text, shaded by `label`'s per-token KLD, as escaped HTML."""
    ref = report.reference
    entry = report.result(label)
    end = len(ref.tokens) if end is None else min(end, len(ref.tokens))
    spans = []
    for i in range(start, end):
        kld = entry.kld[i] if entry.kld is not None and i < len(entry.kld) else None
        agree = entry.agree[i] if entry.agree is not None and i < len(entry.agree) else True
        cls = "t" if agree else "t dis"
        title = html.escape(tooltip(report, entry, i), quote=True)
        spans.append(f'<span class="{cls}" style="background:{_colour(kld)}" title="{title}">'
                     f"{html.escape(ref.piece(ref.tokens[i]))}</span>")
    legend = ('<div class="wb-heat-legend">KL divergence per token: '
              + "".join(f'<span class="t" style="background:{_colour(k)}">{k:g}</span>'
                        for k in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0))
              + ' nats · <span style="text-decoration:underline;text-decoration-thickness:2px">underlined</span>: '
              f"{html.escape(label)}'s most likely token differs from {html.escape(report.reference_label)}'s · "
              "hover a token for the alternatives</div>")
    css = f"<style>{HEATMAP_CSS}</style>" if with_css else ""
    return f'{css}{legend}<div class="wb-heat">{"".join(spans)}</div>'
