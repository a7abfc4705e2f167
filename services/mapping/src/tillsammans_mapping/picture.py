"""The wheel picture: a mapping drawn as its wheel, for the conversation with the child and guardians.

One sector per area, one ring per perspective (the child's voice innermost, then the guardians',
then the professional's), each cell coloured by its step on the wheel's scale and marked with the
step's value, so the picture also reads in black and white. It carries the wheel's own texts and
the levels only: no name, identity number, case or mapping id (decision 21).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from tillsammans_common.wheel import Wheel
from tillsammans_mapping.models import Perspective

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH, HEIGHT = 720, 860
CENTRE_X, CENTRE_Y = 360, 380
HUB = 60
RING = 70
RINGS = (Perspective.CHILD, Perspective.GUARDIANS, Perspective.PROFESSIONAL)
"""Inside out: the child at the centre of the wheel, as the seeds draw it."""
RING_LABEL = {Perspective.CHILD: "Barnets röst", Perspective.GUARDIANS: "Vårdnadshavarnas syn",
              Perspective.PROFESSIONAL: "Professionell bedömning"}
NOT_ASSESSED, UNKNOWN_FILL = "#ffffff", "#d9d9d9"
CALM = ("#1a9850", "#66bd63", "#a6d96a", "#d9ef8b")
WORRY = ("#fee08b", "#fdae61", "#f46d43", "#d73027")


def draw(wheel: Wheel, levels: dict[tuple[str, str], str]) -> bytes:
    """The SVG document of ``wheel`` with ``levels`` keyed by (area code, perspective)."""
    ET.register_namespace("", SVG_NS)
    svg = ET.Element(_tag("svg"), {"width": str(WIDTH), "height": str(HEIGHT),
                                   "viewBox": f"0 0 {WIDTH} {HEIGHT}", "font-family": "sans-serif"})
    ET.SubElement(svg, _tag("title")).text = wheel.name
    _text(svg, WIDTH / 2, 34, wheel.name, size=20, anchor="middle", weight="bold")
    colours = _colours(wheel)
    count = len(wheel.areas)
    sweep = 2 * math.pi / count
    for index, area in enumerate(wheel.areas):
        start = -math.pi / 2 + index * sweep  # the first area at twelve o'clock, clockwise as it is read
        group = ET.SubElement(svg, _tag("g"), {"class": "area", "data-area": area.code})
        for ring, perspective in enumerate(RINGS):
            inner, outer = HUB + ring * RING, HUB + (ring + 1) * RING
            level = levels.get((area.code, perspective.value))
            step = wheel.scale.step(level) if level else None
            fill = NOT_ASSESSED if level is None else UNKNOWN_FILL if step is None else colours[step.code]
            cell = ET.SubElement(group, _tag("path"), {
                "d": _sector(inner, outer, start, start + sweep), "fill": fill, "stroke": "#555555",
                "stroke-width": "1", "data-perspective": perspective.value, "data-level": level or ""})
            said = "inte bedömt" if level is None else "vet inte" if step is None else step.label_sv
            ET.SubElement(cell, _tag("title")).text = f"{area.label_sv}, {RING_LABEL[perspective]}: {said}"
            if level is not None:
                x, y = _point((inner + outer) / 2, start + sweep / 2)
                _text(group, x, y + 5, "?" if step is None else str(step.value), size=14, anchor="middle")
        x, y = _point(HUB + len(RINGS) * RING + 22, start + sweep / 2)
        anchor = "middle" if abs(x - CENTRE_X) < 20 else "start" if x > CENTRE_X else "end"
        _text(group, x, y + 5, area.label_sv, size=16, anchor=anchor, weight="bold")
    _legend(svg, wheel, colours)
    document: bytes = ET.tostring(svg, encoding="utf-8", xml_declaration=True)
    return document


def _colours(wheel: Wheel) -> dict[str, str]:
    # Calm steps in greens, flagging steps in yellow to red, each darker the further from the other kind.
    calm = [step.code for step in wheel.scale.steps if not step.flags]
    worry = [step.code for step in wheel.scale.steps if step.flags]
    worry_first = wheel.scale.steps[0].flags  # a scale may run from worst to best
    if worry_first:
        worry.reverse()
    else:
        calm.reverse()
    colours = {code: CALM[min(len(calm) - 1 - i, len(CALM) - 1)] for i, code in enumerate(calm)}
    colours.update({code: WORRY[min(i, len(WORRY) - 1)] for i, code in enumerate(worry)})
    return colours


def _legend(svg: ET.Element, wheel: Wheel, colours: dict[str, str]) -> None:
    y = CENTRE_Y + HUB + len(RINGS) * RING + 70
    rings = ", ".join(f"{i + 1}. {RING_LABEL[p]}" for i, p in enumerate(RINGS))
    _text(svg, 40, y, f"Ringarna inifrån och ut: {rings}", size=13)
    keys = [(colours[step.code], f"{step.value} {step.label_sv}") for step in wheel.scale.steps]
    keys += [(UNKNOWN_FILL, "? vet inte"), (NOT_ASSESSED, "inte bedömt")]
    x, row = 40.0, y + 18
    for fill, label in keys:
        width = 40 + 7.5 * len(label)  # a generous estimate of 13px sans-serif, so labels never overlap
        if x + width > WIDTH - 20:  # a long scale wraps instead of running off the picture
            x, row = 40.0, row + 26
        ET.SubElement(svg, _tag("rect"), {"x": f"{x:.1f}", "y": str(row), "width": "16", "height": "16",
                                          "fill": fill, "stroke": "#555555"})
        _text(svg, x + 22, row + 13, label, size=13)
        x += width
    height = max(HEIGHT, row + 40)
    svg.set("height", str(height))
    svg.set("viewBox", f"0 0 {WIDTH} {height}")


def _sector(inner: float, outer: float, start: float, end: float) -> str:
    large = 1 if end - start > math.pi else 0
    (ox1, oy1), (ox2, oy2) = _point(outer, start), _point(outer, end)
    (ix2, iy2), (ix1, iy1) = _point(inner, end), _point(inner, start)
    return (f"M {ox1:.2f} {oy1:.2f} A {outer} {outer} 0 {large} 1 {ox2:.2f} {oy2:.2f} "
            f"L {ix2:.2f} {iy2:.2f} A {inner} {inner} 0 {large} 0 {ix1:.2f} {iy1:.2f} Z")


def _point(radius: float, angle: float) -> tuple[float, float]:
    return CENTRE_X + radius * math.cos(angle), CENTRE_Y + radius * math.sin(angle)


def _text(parent: ET.Element, x: float, y: float, content: str, *, size: int, anchor: str = "start",
          weight: str = "normal") -> None:
    element = ET.SubElement(parent, _tag("text"), {"x": f"{x:.1f}", "y": f"{y:.1f}", "font-size": str(size),
                                                   "text-anchor": anchor, "font-weight": weight})
    element.text = content


def _tag(name: str) -> str:
    return f"{{{SVG_NS}}}{name}"
