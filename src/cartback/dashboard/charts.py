"""Charts drawn on the server as inline SVG: no script, no library, and presentation attributes only (the
dashboard's CSP allows no inline style). Each chart carries a text summary for screen readers, and the
page shows the same figures as a table. Every text placed in the SVG is escaped here, so templates insert
the result with `|safe`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

COLORS = ("#2456c7", "#1c7a43", "#c77d24", "#8a3ab9")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int]


def _nice_max(value: int) -> int:
    """The axis top: the next 1, 2 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1
    power = 1
    while power * 10 <= value:
        power *= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def bars(
    title: str, labels: Sequence[str], series: Sequence[Series], *, width: int = 720, height: int = 220
) -> str:
    """Grouped bars, one group per label (an interval), one bar per series, with a legend."""
    left, right, top, bottom = 44, 8, 28, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max((v for s in series for v in s.values), default=0))
    groups = max(len(labels), 1)
    group_w = plot_w / groups
    bar_w = max(group_w * 0.8 / max(len(series), 1), 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}: {escape(summary(series))}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dde1e8"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#5b6475">'
            f"{_short(top_value * fraction)}</text>"
        )
    for g, label in enumerate(labels):
        x0 = left + g * group_w + group_w * 0.1
        for s_index, s in enumerate(series):
            value = s.values[g] if g < len(s.values) else 0
            h = plot_h * value / top_value
            x = x0 + s_index * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
                f'height="{h:.1f}" fill="{COLORS[s_index % len(COLORS)]}">'
                f"<title>{escape(label)}: {value:,} {escape(s.name)}</title></rect>"
            )
        every = max(1, round(groups / 8))
        if g % every == 0:
            parts.append(
                f'<text x="{left + (g + 0.5) * group_w:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'font-size="11" fill="#5b6475">{escape(label)}</text>'
            )
    x = left
    for s_index, s in enumerate(series):
        parts.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{COLORS[s_index % len(COLORS)]}"/>')
        parts.append(f'<text x="{x + 14}" y="15" font-size="12" fill="#1d2330">{escape(s.name)}</text>')
        x += 24 + 7 * len(s.name)
    parts.append("</svg>")
    return "".join(parts)


def funnel(title: str, stages: Sequence[tuple[str, int]], *, width: int = 720) -> str:
    """Horizontal bars, each stage's width relative to the first, with its count and the share of the
    stage before it."""
    row_h, label_w = 34, 150
    height = row_h * len(stages) + 8
    first = max(stages[0][1], 1) if stages else 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}: '
        + escape(", ".join(f"{name} {value:,}" for name, value in stages))
        + '">',
        f"<title>{escape(title)}</title>",
    ]
    previous = None
    for i, (name, value) in enumerate(stages):
        y = 4 + i * row_h
        w = (width - label_w - 120) * value / first
        share = "" if previous is None else f" ({100 * value / previous:.0f}%)" if previous else " (—)"
        parts.append(f'<text x="0" y="{y + 20}" font-size="13" fill="#1d2330">{escape(name)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 4}" width="{max(w, 1):.1f}" height="{row_h - 10}" rx="3" '
            f'fill="{COLORS[0]}" fill-opacity="{1 - i * 0.18:.2f}"/>'
        )
        parts.append(
            f'<text x="{label_w + max(w, 1) + 8:.1f}" y="{y + 20}" font-size="13" fill="#1d2330">'
            f"{value:,}{share}</text>"
        )
        previous = value
    parts.append("</svg>")
    return "".join(parts)


def summary(series: Sequence[Series]) -> str:
    return ", ".join(f"{sum(s.values):,} {s.name}" for s in series)


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"
