"""A pipeline drawn as SVG: change sources, then schedulers, builders and reporters, left to right.

Edges forward (changes, requests, reports) are solid; edges back from builders to the schedulers their
``Trigger`` steps start (or their ``Dependent`` schedulers follow) are dashed. It is plain SVG
text, so Jupyter shows it through ``Pipeline._repr_html_`` and it can be saved as a file.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline import Pipeline

_BOX_W, _BOX_H, _GAP_Y, _GAP_X, _PAD = 170, 40, 16, 90, 12
_COLOURS = {"source": "#e8f0fe", "scheduler": "#fef7e0", "builder": "#e6f4ea", "reporter": "#fce8e6"}


def svg(pipeline: Pipeline) -> str:
    """The pipeline's graph as an SVG document."""
    columns = {
        "source": [(s.name, type(s).__name__) for s in pipeline.sources],
        "scheduler": [(s.name, type(s).__name__) for s in pipeline.schedulers],
        "builder": [(b.name, f"{len(b.steps)} steps on {', '.join(b.workers)}") for b in pipeline.builders],
        "reporter": [(r.name, ", ".join(sorted(r.mode))) for r in pipeline.reporters],
    }
    kinds = [kind for kind, nodes in columns.items() if nodes]
    places: dict[str, tuple[float, float]] = {}
    parts: list[str] = []
    for index, kind in enumerate(kinds):
        x = _PAD + index * (_BOX_W + _GAP_X)
        for row, (name, detail) in enumerate(columns[kind]):
            y = _PAD + 18 + row * (_BOX_H + _GAP_Y)
            places[f"{kind}:{name}"] = (x, y)
            parts.append(
                f"<g><title>{escape(kind)} {escape(name)}: {escape(detail)}</title>"
                f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="6" fill="{_COLOURS[kind]}" '
                f'stroke="#5f6368"/>'
                f'<text x="{x + 8}" y="{y + 16}" font-weight="bold">{escape(_clip(name))}</text>'
                f'<text x="{x + 8}" y="{y + 32}" fill="#5f6368" font-size="11">{escape(_clip(detail, 26))}</text></g>'
            )
        parts.append(f'<text x="{x}" y="{_PAD + 8}" fill="#5f6368" font-size="11">{kind}s</text>')
    for start, end, label in pipeline.edges():
        if start not in places or end not in places:
            continue
        (x1, y1), (x2, y2) = places[start], places[end]
        forward = x2 > x1
        sx, ex = (x1 + _BOX_W, x2) if forward else (x1, x2 + _BOX_W)
        sy, ey = y1 + _BOX_H / 2, y2 + _BOX_H / 2
        bend = (ex - sx) / 2 if forward else -_GAP_X
        dash = "" if forward else ' stroke-dasharray="5,4"'
        parts.append(
            f'<path d="M{sx},{sy} C{sx + bend},{sy} {ex - bend},{ey} {ex},{ey}" fill="none" stroke="#5f6368"'
            f'{dash} marker-end="url(#arrow)"><title>{escape(f"{start} -> {end}: {label}")}</title></path>'
        )
    rows = max((len(columns[k]) for k in kinds), default=0)
    width = _PAD * 2 + len(kinds) * _BOX_W + max(len(kinds) - 1, 0) * _GAP_X
    height = _PAD * 2 + 18 + rows * (_BOX_H + _GAP_Y)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="13">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#5f6368"/></marker></defs>'
        + "".join(parts)
        + "</svg>"
    )


def _clip(text: str, width: int = 22) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
