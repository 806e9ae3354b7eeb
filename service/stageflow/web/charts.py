"""Small SVG line charts drawn on the server: a metric gate's series against its bounds."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

from stageflow.domain.gates import MetricSeries

WIDTH, HEIGHT = 360, 120
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 8, 8, 18


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.3g}"


def line_chart(
    series: MetricSeries,
    *,
    title: str,
    start: float,
    end: float,
    low: float | None = None,
    high: float | None = None,
) -> Markup:
    """An accessible SVG of ``series`` over ``[start, end]``, bounds dashed; "no data" as such."""
    label = escape(title)
    if series.error or not series.points:
        why = escape(series.error or "no data in this window")
        return Markup(
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{label}: no data">'
            f'<rect x="0.5" y="0.5" width="{WIDTH - 1}" height="{HEIGHT - 1}" class="frame"/>'
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2 - 6}" text-anchor="middle" class="nodata">'
            f'no data</text><text x="{WIDTH / 2}" y="{HEIGHT / 2 + 12}" text-anchor="middle" '
            f'class="axis">{why[:70]}</text></svg>'
        )
    values = [v for _, v in series.points]
    bounds = [b for b in (low, high) if b is not None]
    top = max([*values, *bounds])
    bottom = min([*values, *bounds, 0.0])
    if top == bottom:
        top = bottom + 1
    span_t = max(end - start, 1.0)
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(at: float) -> float:
        return PAD_LEFT + (at - start) / span_t * plot_w

    def y(value: float) -> float:
        return PAD_TOP + (top - value) / (top - bottom) * plot_h

    path = " ".join(
        f"{'M' if i == 0 else 'L'}{x(at):.1f},{y(v):.1f}" for i, (at, v) in enumerate(series.points)
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{label}: last value {escape(_fmt(values[-1]))}">',
        f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end" class="axis">'
        f"{escape(_fmt(top))}</text>",
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end" class="axis">'
        f"{escape(_fmt(bottom))}</text>",
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 4}" class="axis">{_clock(start)}</text>',
        f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 4}" text-anchor="end" class="axis">'
        f"{_clock(end)}</text>",
    ]
    for bound in bounds:
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y(bound):.1f}" '
            f'y2="{y(bound):.1f}" class="bound"/>'
        )
    parts.append(f'<path d="{path}" class="series"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M")
