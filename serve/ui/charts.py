"""Small charts as inline SVG, drawn on the server: no JavaScript, no chart library, readable on a phone.

Only numbers and text we format ourselves go into the markup, and every text is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape


def _fmt_day(t: datetime) -> str:
    return t.strftime("%d %b")


def score_history(
    points: list[tuple[datetime, int, str]], threshold: int | None = None, width: int = 560, height: int = 160
) -> Markup:
    """Score over time, oldest left. `points`: (scored_at, score 0-100, grade), oldest first.

    Each scoring is one step to the right (scores taken close together stay readable); the dashed line is
    the handoff threshold, so "above the line" reads as "hand to sales".
    """
    if not points:
        return Markup("")
    left, right, top, bottom = 34, 12, 10, 24
    w, h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (w / 2 if len(points) == 1 else w * i / (len(points) - 1))

    def y(score: float) -> float:
        return top + h * (1 - max(0, min(100, score)) / 100)

    parts = [
        (
            f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(_label(points))}" preserveAspectRatio="xMidYMid meet">'
        )
    ]
    for s in (0, 50, 100):
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(s):.1f}" y2="{y(s):.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y(s) + 4:.1f}" text-anchor="end">{s}</text>')
    if threshold is not None:
        parts.append(
            f'<line class="threshold" x1="{left}" x2="{width - right}" y1="{y(threshold):.1f}" '
            f'y2="{y(threshold):.1f}"/>'
        )
        parts.append(
            f'<text class="axis threshold-label" x="{width - right}" y="{y(threshold) - 4:.1f}" '
            f'text-anchor="end">handoff {threshold}</text>'
        )
    coords = " ".join(f"{x(i):.1f},{y(s):.1f}" for i, (_, s, _) in enumerate(points))
    if len(points) > 1:
        parts.append(f'<polyline class="line" points="{coords}"/>')
    for i, (t, s, g) in enumerate(points):
        parts.append(
            f'<circle class="dot grade-{escape(g)}" cx="{x(i):.1f}" cy="{y(s):.1f}" r="4">'
            f"<title>{escape(t.strftime('%Y-%m-%d %H:%M'))} UTC: {s} ({escape(g)})</title></circle>"
        )
    parts.append(f'<text class="axis" x="{left}" y="{height - 6}">{escape(_fmt_day(points[0][0]))}</text>')
    if len(points) > 1:
        parts.append(
            f'<text class="axis" x="{width - right}" y="{height - 6}" text-anchor="end">'
            f"{escape(_fmt_day(points[-1][0]))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _label(points: Sequence[tuple[datetime, int, str]]) -> str:
    if len(points) == 1:
        return f"Score history: one score, {points[0][1]}"
    return f"Score history: {len(points)} scores, from {points[0][1]} to {points[-1][1]}"


def weekly_bars(weeks: list[tuple[datetime, int]], width: int = 560, height: int = 170) -> Markup:
    """Leads handed over per week, one bar per week, with the count above each bar."""
    if not weeks:
        return Markup("")
    left, right, top, bottom = 8, 8, 18, 24
    w, h = width - left - right, height - top - bottom
    peak = max(n for _, n in weeks) or 1
    slot = w / len(weeks)
    bar = max(2.0, slot * 0.7)
    total = sum(n for _, n in weeks)
    parts = [
        (
            f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="Leads handed over per week: {total} in {len(weeks)} weeks">'
        )
    ]
    parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{top + h}" y2="{top + h}"/>')
    label_every = max(1, len(weeks) // 7)
    for i, (week, n) in enumerate(weeks):
        bh = h * n / peak
        bx = left + i * slot + (slot - bar) / 2
        parts.append(
            f'<rect class="bar" x="{bx:.1f}" y="{top + h - bh:.1f}" width="{bar:.1f}" height="{bh:.1f}">'
            f"<title>week of {escape(week.strftime('%Y-%m-%d'))}: {n}</title></rect>"
        )
        if n and len(weeks) <= 26:
            parts.append(
                f'<text class="axis" x="{bx + bar / 2:.1f}" y="{top + h - bh - 4:.1f}" '
                f'text-anchor="middle">{n}</text>'
            )
        if i % label_every == 0:
            parts.append(
                f'<text class="axis" x="{bx + bar / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                f"{escape(_fmt_day(week))}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
