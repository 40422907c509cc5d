"""A provider's history on one chart: which local file it answered like at each check, and how it did on the probe.

Why SVG text (as decide/chart.py): the same chart shows on the Providers page and in the offline provider report,
with no script, font or network. Nothing in it runs; every label (file labels, reasons, times: values from the
endpoint and the database) is escaped, and characters XML cannot hold are dropped.

Two panels share the x axis, one column per check (oldest left; the newest MAX_CHECKS):
- top: the closest local file (one row per ladder file, biggest first), a dot per successful check with its
  confidence written beside it, joined by a line;
- bottom: the quality probe's pass rate (0–100%) with its 95% interval as a bar.
A failed or cancelled check is a grey column marked "failed" (its reason on hover): never a point, so it cannot
read as a drop. The check where a change beyond noise showed is a dashed orange line marked "changed".
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from workbench.storage.watch_rows import ProviderCheck
from workbench.watch.change import when

__all__ = ["MAX_CHECKS", "svg_timeline"]

MAX_CHECKS = 40
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_DOT, _BAR, _FAILED, _CHANGE, _GRID = "#3b5bdb", "#2b8a3e", "#adb5bd", "#e8590c", "#e9ecef"


def _t(x: object, limit: int = 120) -> str:
    text = _XML_BAD.sub("", " ".join(str("" if x is None else x).split()))
    return html.escape(text if len(text) <= limit else text[: limit - 1] + "…")


def svg_timeline(checks: Sequence[ProviderCheck], labels: Sequence[str], *, changed_at: int | None = None,
                 width: int = 760, height: int = 400) -> str:
    """The chart of `checks` (oldest first); `labels` are the ladder's files, biggest first (a closest match that
    is not among them gets its own row); `changed_at` is the id of the check where a change showed."""
    shown = list(checks)[-MAX_CHECKS:]
    rows = list(dict.fromkeys([*labels, *(c.closest for c in shown if c.ok and c.closest)]))
    ml, mr, mt, gap, mb = 90, 20, 34, 46, 48
    top_h = max(90, min(22 * len(rows), 190))
    bottom_h = height - mt - top_h - gap - mb
    pw = width - ml - mr
    n = max(1, len(shown))

    def sx(i: int) -> float:
        return ml + pw * (i + 0.5) / n

    def row_y(label: str) -> float:
        return mt + top_h * (rows.index(label) + 0.5) / max(1, len(rows))

    b0 = mt + top_h + gap

    def py(rate: float) -> float:
        return b0 + bottom_h * (1 - max(0.0, min(1.0, rate)))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'role="img" font-family="sans-serif" font-size="11" style="max-width:100%;height:auto">',
           "<title>Closest local file and quality probe pass rate, per check</title>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{ml}" y="{mt - 14}" font-size="12" font-weight="bold" fill="#222222">Answers most like '
           '(dot: closest local file; number: confidence)</text>',
           f'<text x="{ml}" y="{b0 - 12}" font-size="12" font-weight="bold" fill="#222222">Quality probe pass rate '
           '(bar: 95% interval)</text>']
    for label in rows:
        y = row_y(label)
        out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="{_GRID}"/>')
        out.append(f'<text x="{ml - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#333333">{_t(label, 14)}</text>')
    for rate in (0.0, 0.5, 1.0):
        y = py(rate)
        out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="{_GRID}"/>')
        out.append(f'<text x="{ml - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#333333">{rate:.0%}</text>')
    if not shown:
        out.append(f'<text x="{ml + pw / 2:.1f}" y="{mt + top_h / 2:.1f}" text-anchor="middle" fill="#666666">'
                   "No checks yet</text></svg>")
        return "\n".join(out)

    for i, c in enumerate(shown):
        x = sx(i)
        if not c.ok:
            out.append(f'<g><title>Check #{c.id}, {_t(when(c.started_at))}: {_t(c.status)}: {_t(c.reason, 300)}</title>'
                       f'<rect x="{x - 9:.1f}" y="{mt}" width="18" height="{b0 + bottom_h - mt:.1f}" fill="{_FAILED}" '
                       'fill-opacity="0.35"/>'
                       f'<text x="{x:.1f}" y="{b0 - 28:.1f}" text-anchor="middle" fill="#495057">'
                       f'{"failed" if c.status == "failed" else "stopped"}</text></g>')
        if c.id == changed_at:
            out.append(f'<line x1="{x - pw / n / 2:.1f}" y1="{mt - 4}" x2="{x - pw / n / 2:.1f}" '
                       f'y2="{b0 + bottom_h:.1f}" stroke="{_CHANGE}" stroke-width="2" stroke-dasharray="5 3"/>')
            out.append(f'<text x="{x - pw / n / 2 + 4:.1f}" y="{b0 - 28:.1f}" fill="{_CHANGE}" '
                       'font-weight="bold">changed</text>')
        out.append(f'<text x="{x:.1f}" y="{b0 + bottom_h + 16:.1f}" text-anchor="middle" fill="#333333">#{c.id}</text>')
        out.append(f'<text x="{x:.1f}" y="{b0 + bottom_h + 30:.1f}" text-anchor="middle" fill="#666666" font-size="9">'
                   f'{_t(when(c.started_at).removesuffix(" UTC"), 16)}</text>')

    ok = [(i, c) for i, c in enumerate(shown) if c.ok and c.closest]
    if len(ok) > 1:
        path = " ".join(f"{sx(i):.1f},{row_y(c.closest or ''):.1f}" for i, c in ok)
        out.append(f'<polyline points="{path}" fill="none" stroke="{_DOT}" stroke-opacity="0.5" stroke-width="1.5"/>')
    for i, c in ok:
        x, y = sx(i), row_y(c.closest or "")
        conf = "only file" if c.confidence is None else f"{c.confidence:.2f}"
        out.append(f'<g><title>Check #{c.id}, {_t(when(c.started_at))}: like {_t(c.closest)} (confidence {conf})'
                   f'{"; runner-up " + _t(c.runner_up) if c.runner_up else ""}</title>'
                   f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{_DOT}"/></g>')
        out.append(f'<text x="{x + 9:.1f}" y="{y - 7:.1f}" fill="#1f2328" font-size="10">{conf}</text>')
        if c.pass_rate is not None:
            lo, hi = c.pass_low if c.pass_low is not None else c.pass_rate, c.pass_high if c.pass_high is not None else c.pass_rate
            out.append(f'<g><title>Check #{c.id}: {c.passed} of {c.total} passed, {c.pass_rate:.0%} '
                       f'(95% interval {lo:.0%}–{hi:.0%})</title>'
                       f'<line x1="{x:.1f}" y1="{py(lo):.1f}" x2="{x:.1f}" y2="{py(hi):.1f}" stroke="{_BAR}" '
                       'stroke-width="3"/>'
                       f'<circle cx="{x:.1f}" cy="{py(c.pass_rate):.1f}" r="5" fill="{_BAR}"/></g>')
    if len(checks) > len(shown):
        out.append(f'<text x="{ml}" y="{height - 4}" fill="#666666" font-size="10">The newest {len(shown)} of '
                   f"{len(checks)} checks.</text>")
    out.append("</svg>")
    return "\n".join(out)
