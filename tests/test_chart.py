"""The recommendation's quality-vs-memory chart: the Pareto front on handmade points, and an SVG that parses as XML,
escapes every label, runs nothing, picks a log scale when it should and stays bounded."""

from __future__ import annotations

import base64
import math
import xml.etree.ElementTree as ET

from workbench.decide.chart import (
    MAX_POINTS,
    ChartPoint,
    mark_front,
    pareto_front,
    svg_chart,
    svg_img_tag,
    uses_log_scale,
)

GIB = 1024**3
NS = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script>"


def pt(label: str, gib: float, loss: float, tok_s: float | None = 10.0, **kw) -> ChartPoint:
    return ChartPoint(label, int(gib * GIB), loss, tok_s, **kw)


def test_front_keeps_what_nothing_beats_and_drops_the_dominated() -> None:
    points = [
        pt("Q8_0", 8.0, 0.001),
        pt("Q4_K_M", 4.6, 0.031),
        pt("Q4_0", 4.6, 0.072),  # same memory as Q4_K_M, worse: dominated
        pt("Q5_0 worse", 5.2, 0.040),  # more memory and more loss than Q4_K_M: dominated
        pt("Q2_K", 3.0, 0.445),
        pt("Q3 equal loss, more memory", 3.5, 0.445),  # as lossy as Q2_K with more memory: dominated
        pt("F16", 15.0, 0.0),
    ]
    assert [points[i].label for i in pareto_front(points)] == ["Q2_K", "Q4_K_M", "Q8_0", "F16"]


def test_identical_points_are_both_on_the_front_and_bad_numbers_never_are() -> None:
    points = [pt("a", 2.0, 0.1), pt("b", 2.0, 0.1), pt("c", 1.0, math.nan), pt("d", 3.0, math.inf), pt("e", 4.0, 0.01)]
    assert pareto_front(points) == [0, 1, 4]
    assert pareto_front([]) == []
    marked = mark_front(points)
    assert [p.on_front for p in marked] == [True, True, False, False, True]
    assert not any(p.on_front for p in points)  # copies: the caller's points are left alone


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, whatever the labels held
    assert root.tag == f"{NS}svg"
    return root


def _texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{NS}text")]


def test_svg_escapes_labels_runs_nothing_and_marks_front_pick_and_misfits() -> None:
    points = mark_front([pt(HOSTILE, 1.0, 0.2, 30.0), pt('Q4 "K" & M', 2.0, 0.03, 20.0, recommended=True),
                         pt("Q8_0", 4.0, 0.001, 12.0), pt("F16 \x00\x07bell", 8.0, 0.0005, None, fits=False)])
    svg = svg_chart(points, title="Pick <b>one</b>", x_title="Memory on <target> (GiB)", y_title="mean KLD")
    root = _parse(svg)
    assert HOSTILE not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "<b>" not in svg and "Pick &lt;b&gt;one&lt;/b&gt;" in svg
    texts = _texts(root)
    assert HOSTILE in texts and 'Q4 "K" & M' in texts and "F16 bell" in texts  # shown as written; controls dropped
    assert "Memory on <target> (GiB)" in texts and "mean KLD (log scale)" in texts
    for el in root.iter():  # no script, no handlers, nothing fetched
        assert el.tag not in (f"{NS}script", f"{NS}foreignObject", f"{NS}image", f"{NS}a")
        assert not any(k.startswith("on") or "href" in k for k in el.attrib), el.attrib
    assert "url(#wb-speed)" in svg and "http://" not in svg.replace("http://www.w3.org/2000/svg", "")
    circles = list(root.iter(f"{NS}circle"))
    assert any(c.get("fill") == "none" and c.get("stroke-dasharray") for c in circles)  # the misfit, hollow
    assert any(c.get("r") == "11" for c in circles)  # the recommended point's ring
    assert len([p for p in root.iter(f"{NS}path")]) == 1  # the front's step line
    assert {"12", "30 tok/s"} <= set(texts)  # the colour bar's ends
    assert any(t == "Q4 \"K\" & M" for t in texts)
    tips = ["".join(t.itertext()) for g in root.iter(f"{NS}g") for t in g.iter(f"{NS}title")]
    assert any("recommended" in t and "20.0 tok/s" in t for t in tips)
    assert any("does not fit" in t and "no speed figure" in t for t in tips)


def test_log_scale_when_losses_span_decades_and_linear_otherwise() -> None:
    assert uses_log_scale([0.001, 0.03, 0.45])  # 2.65 decades
    assert not uses_log_scale([0.02, 0.03, 0.45])  # 1.35 decades
    assert uses_log_scale([0.0, 0.001, 0.45])  # a zero (the reference) sits on its own baseline
    assert not uses_log_scale([-0.05, 0.001, 0.45])  # a negative loss cannot be drawn on a log axis
    assert not uses_log_scale([0.0, 0.3])  # one positive value spans nothing
    log_svg = svg_chart([pt("a", 1, 0.0), pt("b", 2, 0.001), pt("c", 3, 0.45)], y_title="KLD")
    texts = _texts(_parse(log_svg))
    assert "KLD (log scale)" in texts and {"0.001", "0.01", "0.1", "1", "0"} <= set(texts)
    lin = _texts(_parse(svg_chart([pt("a", 1, -0.05), pt("b", 2, 0.2)], y_title="pass-rate drop")))
    assert "pass-rate drop" in lin and not any("log scale" in t for t in lin)


def test_empty_input_gives_a_chart_that_says_so() -> None:
    for points in ([], [pt("nan", 1.0, math.nan)]):
        root = _parse(svg_chart(points, title="Nothing yet"))
        assert "Nothing to plot" in _texts(root)


def test_bounded_points_and_labels() -> None:
    many = [pt(f"candidate-{i}-" + "x" * 200, 1 + i / 100, 0.5 / (1 + i)) for i in range(MAX_POINTS + 50)]
    many[-1].recommended = True
    svg = svg_chart(mark_front(many))
    root = _parse(svg)
    dots = [c for c in root.iter(f"{NS}circle") if c.get("r") == "6"]
    assert len(dots) == MAX_POINTS + 2  # the points drawn, plus the legend's two sample dots
    texts = _texts(root)
    assert any("50 more points not shown" in t for t in texts)
    assert any(t.startswith(f"candidate-{MAX_POINTS + 49}-") for t in texts)  # the pick is kept
    assert max(len(t) for t in texts) <= 80 and len(svg) < 400_000


def test_markdown_takes_it_as_one_raw_block_and_st_html_gets_an_image() -> None:
    svg = svg_chart([pt("**bold** $x$ _it_", 1, 0.1), pt("b", 2, 0.01)])
    lines = svg.split("\n")
    assert lines[0].startswith("<svg ") and lines[-1] == "</svg>" and all(line.strip() for line in lines)
    tag = svg_img_tag(svg, alt='a "chart" <here>')
    assert tag.startswith('<img alt="a &quot;chart&quot; &lt;here&gt;" src="data:image/svg+xml;base64,')
    encoded = tag.split("base64,")[1].split('"')[0]
    assert base64.b64decode(encoded).decode() == svg


def test_overlapping_labels_give_way_to_the_pick_and_the_front() -> None:
    """Twelve points in one spot: three places for a label around it (above right, below right, above left); the
    recommended one's is drawn, and two of the others."""
    from workbench.decide.chart import ChartPoint, svg_chart

    pts = [ChartPoint(f"crowd {i}", 300 * 2**20 + i, 0.05, 100.0, True, False, False) for i in range(11)]
    pts.append(ChartPoint("the pick", 300 * 2**20 + 5, 0.05, 100.0, True, True, True))
    svg = svg_chart(pts, title="t")
    texts = [t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert "the pick" in texts and sum(1 for t in texts if t and t.startswith("crowd")) == 2
    assert svg.count("<title>crowd") == 11  # each still named on hover
    assert "hover a point" in svg
