"""Charts as SVG rendered on the server: the same markup serves the page and the PDF
report. No scripts, no style attributes (the CSP forbids both): geometry and default
colours in presentation attributes (what WeasyPrint draws; it does not style inline SVG
from the page's CSS), which CSS classes in static/app.css override in browsers. Every
chart carries a title for assistive technology and is paired with a data table
(templates/_chart.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Defaults matching static/app.css, for renderers without the page's CSS.
BAR = 'fill="#16a34a"'
AXIS = 'stroke="#e4e1d8"'
TICK = 'fill="#5f5b53" font-size="11" font-family="sans-serif"'
HEAT = ("#f1efe8", "#dcfce7", "#86efac", "#22c55e", "#15803d", "#14532d")


@dataclass
class Chart:
    svg: Markup
    title: str
    headers: tuple[str, ...]
    rows: list[tuple]  # the data, for the table alternative


# Rough advance of one tick-label character in viewBox units (11px sans-serif).
_CHAR_W = 6.2


def columns(title: str, points: list[tuple[str, int]], *, value_label: str = "Plays", width: int = 720,
            height: int = 180, every: int | None = None) -> Chart:
    """Vertical bars, one per point, with sparse x labels."""
    n = max(len(points), 1)
    top = max((v for _, v in points), default=0) or 1
    plot_h, label_h = height - 24, 18
    bar_w = width / n
    every = every or max(1, n // 8)
    last_end = float("-inf")
    parts = [f'<svg class="chart chart-columns" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}" preserveAspectRatio="none" focusable="false">',
             f"<title>{escape(title)}</title>",
             f'<line class="axis" {AXIS} x1="0" y1="{plot_h}" x2="{width}" y2="{plot_h}"/>']
    for i, (label, value) in enumerate(points):
        h = 0 if not value else max(1.5, value / top * (plot_h - 6))
        x = i * bar_w
        parts.append(f'<rect class="bar" {BAR} x="{x + bar_w * 0.1:.2f}" y="{plot_h - h:.2f}" width="{bar_w * 0.8:.2f}" '
                     f'height="{h:.2f}"><title>{escape(label)}: {value:,}</title></rect>')
        if i % every == 0:
            # Labels at the edges are anchored inwards so they are not cut off; a label that
            # would overlap the previous one is skipped (long labels on narrow buckets).
            anchor, lx = ("start", x) if i == 0 else ("end", x + bar_w) if i + every >= n else ("middle", x + bar_w / 2)
            w = len(label) * _CHAR_W
            start = {"start": lx, "end": lx - w, "middle": lx - w / 2}[anchor]
            if start < last_end:
                continue
            last_end = start + w + _CHAR_W
            parts.append(f'<text class="tick" {TICK} x="{lx:.2f}" y="{plot_h + label_h - 4}" '
                         f'text-anchor="{anchor}">{escape(label)}</text>')
    parts.append(f'<text class="tick" {TICK} x="2" y="12">{top:,}</text></svg>')
    return Chart(Markup("".join(parts)), title, ("Period", value_label), list(points))


def heatmap(title: str, grid: list[list[int]], *, cell: int = 26) -> Chart:
    """Weekday × hour of day; darker is more."""
    top = max((v for row in grid for v in row), default=0) or 1
    left, head = 40, 18
    width, height = left + 24 * cell, head + 7 * cell
    parts = [f'<svg class="chart chart-heatmap" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}" focusable="false">', f"<title>{escape(title)}</title>"]
    for hour in range(0, 24, 3):
        parts.append(f'<text class="tick" {TICK} x="{left + hour * cell + cell / 2}" y="12" text-anchor="middle">'
                     f'{hour:02d}</text>')
    for day, row in enumerate(grid):
        y = head + day * cell
        parts.append(f'<text class="tick" {TICK} x="0" y="{y + cell * 0.65}">{WEEKDAYS[day]}</text>')
        for hour, value in enumerate(row):
            level = 0 if not value else min(5, 1 + int(value / top * 5))
            parts.append(f'<rect class="heat heat-{level}" fill="{HEAT[level]}" x="{left + hour * cell + 1}" y="{y + 1}" '
                         f'width="{cell - 2}" height="{cell - 2}" rx="3">'
                         f'<title>{WEEKDAYS[day]} {hour:02d}:00–{hour:02d}:59: {value:,} plays</title></rect>')
    parts.append("</svg>")
    rows = [(WEEKDAYS[d], *grid[d]) for d in range(7)]
    return Chart(Markup("".join(parts)), title, ("Day", *(f"{h:02d}" for h in range(24))), rows)


def bar(value: int, top: int) -> Markup:
    """A thin bar under a ranked row's name, as long as its share of the top value
    (decorative: the number is shown beside it)."""
    w = 0 if not top else max(1.0, value / top * 100)
    return Markup(f'<svg class="mini-bar" viewBox="0 0 100 4" width="100%" height="4" preserveAspectRatio="none" '
                  f'aria-hidden="true" focusable="false"><rect class="bar" {BAR} width="{w:.1f}" height="4" rx="1"/></svg>')
