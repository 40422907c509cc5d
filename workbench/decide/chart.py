"""The quality-vs-memory chart of the recommendation: a self-contained SVG, and the Pareto front it marks.

Why SVG text and not plotly: the same chart has to show on the page and in the offline stakeholder report,
and an SVG string needs no script, no font and no network anywhere (plotly.js is 3.5 MB per report). Nothing
in it runs: no <script>, no event attributes, no external href; every label is escaped (html.escape) and
characters XML cannot hold are dropped, so the string parses as XML whatever the labels say.

The chart: x = memory (GiB, from 0), y = quality loss (e.g. mean KLD; log scale when the positive values span
more than 1.5 decades and none is negative; zeros then sit on a baseline marked "0" under the lowest decade),
colour = decode tok/s (legend: a colour bar; grey when a point has no speed figure), the Pareto front as a
step line, the recommended point ringed, points that do not fit hollow and grey. At most `max_points` points
are drawn (recommended and front points first); the rest are counted in a footnote.

Where it shows: inline in the offline report's HTML; on a page with st.markdown(svg, unsafe_allow_html=True) (the
SVG is one element a line with no blank line, so Markdown passes it through as one raw block, hover titles
included). Not inline in st.html: Streamlit 1.67 sanitizes st.html to HTML elements only and drops an <svg>
whole; `svg_img_tag` wraps it as an <img> data URI that st.html keeps (no hover titles in an image).

An empty list gives a valid SVG that says "Nothing to plot" (not an error: a page or report with no
candidates yet still shows where the chart will be).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from workbench.core.text_units import GiB, format_gib, plural

__all__ = ["ChartPoint", "LOG_SPAN_DECADES", "MAX_POINTS", "mark_front", "pareto_front", "svg_chart", "svg_img_tag",
           "uses_log_scale"]

MAX_POINTS = 200
MAX_LABEL = 32
LOG_SPAN_DECADES = 1.5

# Colour bar for tok/s, slow (light) to fast (dark): viridis-like stops, readable on white.
_STOPS = ((0.0, (253, 231, 37)), (0.25, (94, 201, 98)), (0.5, (33, 145, 140)), (0.75, (59, 82, 139)),
          (1.0, (68, 1, 84)))
_NO_SPEED = "#9aa0a6"
_NOT_FIT = "#9aa0a6"
_FRONT = "#d9480f"
# XML 1.0 forbids most control characters even as references: drop them from any text we place.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass
class ChartPoint:
    """One candidate on the chart: `quality_loss` is lower-is-better (mean KLD, a pass-rate drop …)."""

    label: str
    memory_bytes: int
    quality_loss: float
    tok_s: float | None = None
    fits: bool = True
    on_front: bool = False
    recommended: bool = False


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _speed(p: ChartPoint) -> float | None:
    """The point's decode speed when it is a usable figure (finite, not negative)."""
    return float(p.tok_s) if p.tok_s is not None and _finite(p.tok_s) and p.tok_s >= 0 else None


def pareto_front(points: Sequence[ChartPoint]) -> list[int]:
    """Indices of the points no other point beats: none has both memory <= and quality loss <= with one of them
    strictly less. Identical points are all on the front (neither beats the other). Points whose memory or loss
    is not a finite number are never on it. The front is over the points given (filter first, e.g. to those that
    fit); indices come lowest memory first."""
    usable = [i for i, p in enumerate(points) if _finite(p.memory_bytes) and _finite(p.quality_loss)]
    usable.sort(key=lambda i: (points[i].memory_bytes, points[i].quality_loss, i))
    front: list[int] = []
    best = math.inf  # the lowest loss of any point with less memory
    k = 0
    while k < len(usable):
        mem = points[usable[k]].memory_bytes
        group = [i for i in usable[k:] if points[i].memory_bytes == mem]
        low = points[group[0]].quality_loss  # sorted by loss within a memory
        if low < best:
            front += [i for i in group if points[i].quality_loss == low]
            best = low
        k += len(group)
    return front


def mark_front(points: Sequence[ChartPoint]) -> list[ChartPoint]:
    """Copies of the points with `on_front` set from `pareto_front` (the others' flag cleared)."""
    on = set(pareto_front(points))
    return [replace(p, on_front=i in on) for i, p in enumerate(points)]


def uses_log_scale(losses: Sequence[float]) -> bool:
    """Log y when no loss is negative and the positive ones span more than LOG_SPAN_DECADES decades."""
    values = [v for v in losses if _finite(v)]
    positive = [v for v in values if v > 0]
    if any(v < 0 for v in values) or len(positive) < 2:
        return False
    return math.log10(max(positive) / min(positive)) > LOG_SPAN_DECADES


# ---- drawing ------------------------------------------------------------------------------------
def _text(x: object, limit: int | None = None) -> str:
    """Escaped text for an element or attribute; cut to `limit` characters with an ellipsis."""
    s = _XML_BAD.sub("", "" if x is None else str(x))
    s = " ".join(s.split())
    if limit is not None and len(s) > limit:
        s = s[: max(1, limit - 1)] + "…"
    return html.escape(s, quote=True)


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if math.isfinite(x) else "0"


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(1, target)
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _linear_ticks(low: float, high: float) -> tuple[float, float, list[float]]:
    """An axis from `low` to `high` widened to round ends, and its ticks."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    step = _nice_step(high - low)
    start, end = math.floor(low / step) * step, math.ceil(high / step) * step
    n = round((end - start) / step)
    return start, end, [start + i * step for i in range(n + 1)]


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000 or a < 0.001:
        return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{v:.4f}".rstrip("0").rstrip(".")


def _colour(t: float) -> str:
    t = min(1.0, max(0.0, t))
    for (a, ca), (b, cb) in zip(_STOPS, _STOPS[1:], strict=False):
        if t <= b:
            f = 0.0 if b == a else (t - a) / (b - a)
            r, g, bl = (round(x + (y - x) * f) for x, y in zip(ca, cb, strict=True))
            return f"#{r:02x}{g:02x}{bl:02x}"
    return "#{:02x}{:02x}{:02x}".format(*_STOPS[-1][1])


def _keep(points: Sequence[ChartPoint], max_points: int) -> list[ChartPoint]:
    """At most max_points, the recommended and front points first, then the rest in the order given."""
    if len(points) <= max_points:
        return list(points)
    order = sorted(range(len(points)), key=lambda i: (not points[i].recommended, not points[i].on_front, i))
    kept = sorted(order[:max_points])
    return [points[i] for i in kept]


def _empty(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" style="max-width:100%;height:auto">'
            f"<title>{_text(title or 'Chart', 200)}</title>"
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff" stroke="#dddddd"/>'
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" font-size="14" fill="#555555">'
            "Nothing to plot</text></svg>")


def _labels_without_overlap(points: Sequence[ChartPoint], xy: Sequence[tuple[float, float]],
                            max_label: int) -> dict[int, tuple[float, float]]:
    """Where each drawn label goes, by the point's id: in order of importance (the recommended, the front, what
    fits), above right of its point, else below right, else above left, unless all three would overlap a label
    already placed (boxes estimated from 6.2 px per character at the chart's 11 px font)."""
    order = sorted(range(len(points)), key=lambda i: (not points[i].recommended, not points[i].on_front,
                                                      not points[i].fits))
    boxes: list[tuple[float, float, float, float]] = []
    placed: dict[int, tuple[float, float]] = {}
    for i in order:
        x, y = xy[i]
        w = 6.2 * min(len(points[i].label), max_label)
        for tx, ty in ((x + 9, y - 8), (x + 9, y + 16), (x - 9 - w, y - 8)):
            box = (tx - 1, ty - 11, tx + w + 1, ty + 3)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes):
                boxes.append(box)
                placed[id(points[i])] = (tx, ty)
                break
    return placed


def svg_chart(points: Sequence[ChartPoint], *, x_title: str = "Memory (GiB)",
              y_title: str = "Quality loss (mean KLD, nats)", title: str = "", width: int = 720, height: int = 440,
              max_points: int = MAX_POINTS, max_label: int = MAX_LABEL) -> str:
    """A self-contained SVG scatter of the points (see the module docstring for what it draws).

    `on_front` and `recommended` are taken from the points as given (see `mark_front`); points whose memory or
    loss is not a finite number are left out and counted in the footnote, like those over `max_points`."""
    width, height = max(320, int(width)), max(240, int(height))
    drawable = [p for p in points if _finite(p.memory_bytes) and _finite(p.quality_loss)]
    if not drawable:
        return _empty(width, height, title)
    shown = _keep(drawable, max(1, int(max_points)))
    left_out = len(points) - len(shown)

    speeds = [v for p in shown if (v := _speed(p)) is not None]
    legend_w = 170
    ml, mr, mt, mb = 70, legend_w + 20, 40 if title else 20, 62
    pw, ph = width - ml - mr, height - mt - mb

    # x: memory in GiB from 0
    gib = [p.memory_bytes / GiB for p in shown]
    x0, x1, xticks = _linear_ticks(0.0, max(max(gib), 1e-9) * 1.05)

    def sx(v: float) -> float:
        return ml + (v - x0) / (x1 - x0) * pw

    losses = [float(p.quality_loss) for p in shown]
    log = uses_log_scale(losses)
    zero_band = 14.0  # log scale: room under the lowest decade for points at 0
    if log:
        positive = [v for v in losses if v > 0]
        lo, hi = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
        hi = hi if hi > lo else lo + 1
        yticks = [10.0**e for e in range(lo, hi + 1)]
        has_zero = any(v == 0 for v in losses)
        band = zero_band if has_zero else 0.0

        def sy(v: float) -> float:
            if v <= 0:
                return mt + ph
            return mt + (ph - band) * (1 - (math.log10(v) - lo) / (hi - lo))
    else:
        low = min(0.0, min(losses))
        y0, y1, yticks = _linear_ticks(low, max(max(losses), low + 1e-12) * 1.05 if max(losses) > 0 else 1.0)
        has_zero = False

        def sy(v: float) -> float:
            return mt + ph * (1 - (v - y0) / (y1 - y0))

    s_lo, s_hi = (min(speeds), max(speeds)) if speeds else (0.0, 0.0)

    def fill(p: ChartPoint) -> str:
        v = _speed(p)
        if v is None:
            return _NO_SPEED
        return _colour(0.5 if s_hi == s_lo else (v - s_lo) / (s_hi - s_lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="11" '
           'style="max-width:100%;height:auto">',
           f"<title>{_text(title or 'Quality loss against memory', 200)}</title>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    if title:
        out.append(f'<text x="{ml}" y="22" font-size="14" font-weight="bold" fill="#222222">{_text(title, 90)}</text>')
    # grid and ticks
    for v in xticks:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x:.1f}" y="{mt + ph + 16}" text-anchor="middle" fill="#444444">{_tick_label(v)}</text>')
    for v in yticks:
        y = sy(v)
        out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#eeeeee"/>')
        out.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444444">{_tick_label(v)}</text>')
    if log and has_zero:
        y = sy(0.0)
        out.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444444">0</text>')
        out.append(f'<line x1="{ml}" y1="{y - zero_band / 2:.1f}" x2="{ml + pw}" y2="{y - zero_band / 2:.1f}" '
                   'stroke="#cccccc" stroke-dasharray="2 3"/>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888888"/>')
    out.append(f'<text x="{ml + pw / 2:.1f}" y="{mt + ph + 36}" text-anchor="middle" font-size="12" '
               f'fill="#222222">{_text(x_title, 80)}</text>')
    scale = " (log scale)" if log else ""
    out.append(f'<text transform="translate(16,{mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle" font-size="12" '
               f'fill="#222222">{_text(y_title, 70)}{scale}</text>')

    # the Pareto front as a staircase, lowest memory first
    front = sorted((p for p in shown if p.on_front), key=lambda p: (p.memory_bytes, p.quality_loss))
    if len(front) > 1:
        xy = [(sx(p.memory_bytes / GiB), sy(p.quality_loss)) for p in front]
        path = [f"M{xy[0][0]:.1f},{xy[0][1]:.1f}"]
        for (_, py), (qx, qy) in zip(xy, xy[1:], strict=False):
            path.append(f"L{qx:.1f},{py:.1f}L{qx:.1f},{qy:.1f}")
        out.append(f'<path d="{"".join(path)}" fill="none" stroke="{_FRONT}" stroke-width="1.5" '
                   'stroke-dasharray="5 3"/>')

    # labels that would overlap one already placed are left to the hover title: the recommended, the front and the
    # points that fit are placed first
    labelled = _labels_without_overlap(shown, [(sx(p.memory_bytes / GiB), sy(float(p.quality_loss))) for p in shown],
                                       max_label)
    # points: the ones that do not fit first (underneath), the recommended last (on top)
    for p in sorted(shown, key=lambda p: (p.recommended, p.fits)):
        x, y = sx(p.memory_bytes / GiB), sy(float(p.quality_loss))
        v = _speed(p)
        speed = "no speed figure" if v is None else f"{v:.1f} tok/s"
        tip = (f"{p.label} · {format_gib(p.memory_bytes, 2)} · loss {_tick_label(float(p.quality_loss))} · {speed}"
               + ("" if p.fits else " · does not fit") + (" · on the Pareto front" if p.on_front else "")
               + (" · recommended" if p.recommended else ""))
        out.append(f"<g><title>{_text(tip, 240)}</title>")
        if p.recommended:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="11" fill="none" stroke="#222222" stroke-width="2"/>')
        if p.fits:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{fill(p)}" stroke="#333333" stroke-width="0.8"/>')
        else:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="none" stroke="{_NOT_FIT}" stroke-width="1.5" '
                       'stroke-dasharray="2 2"/>')
        if id(p) in labelled:
            colour = "#222222" if p.fits else "#888888"
            weight = ' font-weight="bold"' if p.recommended else ""
            tx, ty = labelled[id(p)]
            out.append(f'<text x="{tx:.1f}" y="{ty:.1f}" fill="{colour}"{weight}>{_text(p.label, max_label)}</text>')
        out.append("</g>")

    # legend
    lx, ly = ml + pw + 18, mt + 4
    out.append(f'<text x="{lx}" y="{ly + 8}" font-weight="bold" fill="#222222">Decode speed</text>')
    if speeds:
        out.append('<defs><linearGradient id="wb-speed" x1="0" y1="0" x2="1" y2="0">'
                   + "".join(f'<stop offset="{o:.2f}" stop-color="{_colour(o)}"/>' for o, _ in _STOPS)
                   + "</linearGradient></defs>")
        out.append(f'<rect x="{lx}" y="{ly + 16}" width="120" height="10" fill="url(#wb-speed)" stroke="#888888"/>')
        out.append(f'<text x="{lx}" y="{ly + 40}" fill="#444444">{_num(s_lo)}</text>')
        out.append(f'<text x="{lx + 120}" y="{ly + 40}" text-anchor="end" fill="#444444">{_num(s_hi)} tok/s</text>')
    else:
        out.append(f'<text x="{lx}" y="{ly + 28}" fill="#444444">no speed figures</text>')
    items = [("grey", "no speed figure"), ("front", "Pareto front"), ("hollow", "does not fit"),
             ("ring", "recommended")]
    iy = ly + 62
    for kind, text in items:
        if kind == "grey":
            out.append(f'<circle cx="{lx + 6}" cy="{iy}" r="6" fill="{_NO_SPEED}" stroke="#333333" stroke-width="0.8"/>')
        elif kind == "front":
            out.append(f'<line x1="{lx}" y1="{iy}" x2="{lx + 14}" y2="{iy}" stroke="{_FRONT}" stroke-width="1.5" '
                       'stroke-dasharray="5 3"/>')
        elif kind == "hollow":
            out.append(f'<circle cx="{lx + 6}" cy="{iy}" r="6" fill="none" stroke="{_NOT_FIT}" stroke-width="1.5" '
                       'stroke-dasharray="2 2"/>')
        else:
            out.append(f'<circle cx="{lx + 6}" cy="{iy}" r="10" fill="none" stroke="#222222" stroke-width="2"/>')
        out.append(f'<text x="{lx + 22}" y="{iy + 4}" fill="#222222">{text}</text>')
        iy += 24
    notes = []
    if left_out:
        notes.append(f"{left_out} more {plural(left_out, 'point')} not shown")
    if len(labelled) < len(shown):
        notes.append("hover a point for the names that would overlap")
    if notes:
        out.append(f'<text x="{ml}" y="{height - 8}" fill="#666666">{_text("; ".join(notes))}</text>')
    out.append("</svg>")
    # One element a line and no blank line: Markdown (st.markdown(..., unsafe_allow_html=True)) then takes the whole
    # SVG as one raw HTML block and leaves the labels alone (no emphasis, no math) instead of reading them as text.
    return "\n".join(out)


def svg_img_tag(svg: str, alt: str = "chart") -> str:
    """The SVG as an <img> with a data URI: for st.html, which strips inline SVG (see the module docstring)."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img alt="{_text(alt, 200)}" src="data:image/svg+xml;base64,{data}" style="max-width:100%;height:auto">'
