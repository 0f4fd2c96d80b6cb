"""The dashboard's chart of reports by outcome per ISO week, drawn as SVG on the server.

No script and no style attribute: the policy allows the hub's own stylesheet only, so each bar carries a class
(`o-<outcome>`) that console.css colours. A table of the same figures follows the chart on the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from hub.console.service import WeekOutcomes

# Drawing order, bottom to top, and the legend's order.
OUTCOMES = ("pending_review", "blocked", "removed", "restricted", "no_action", "false_positive")
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 64  # margins: axis labels left, week labels and legend below


def _nice_max(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^k at least `value` (at least 1): a round top for the axis."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def outcome_label(outcome: str) -> str:
    return outcome.replace("_", " ")


def reports_chart(weeks: Sequence[WeekOutcomes], title_id: str = "chart-title") -> str:
    """Stacked bars, one per week, of reports by current outcome; an accessible SVG element as markup."""
    top = max(4, _nice_max(max((w.total for w in weeks), default=0)))  # four grid steps of whole reports
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(weeks))
    bar = slot * 0.7
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{escape(title_id)}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(5):  # horizontal grid lines and their values
        value = top * i // 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>')
    for i, week in enumerate(weeks):
        x = LEFT + slot * i + (slot - bar) / 2
        y = TOP + plot_h
        for outcome in OUTCOMES:
            n = week.counts.get(outcome, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            out.append(
                f'<rect class="o-{outcome}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                f"<title>{escape(week.label)}: {n} {escape(outcome_label(outcome))}</title></rect>"
            )
        label = week.label.split("-")[1]  # W03; the year is in the table
        out.append(
            f'<text class="axis" x="{x + bar / 2:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{label}</text>'
        )
    per_row = 3
    for i, outcome in enumerate(OUTCOMES):
        lx = LEFT + (i % per_row) * (plot_w / per_row)
        ly = HEIGHT - BOTTOM + 30 + (i // per_row) * 18
        out.append(f'<rect class="o-{outcome}" x="{lx:.1f}" y="{ly - 10}" width="12" height="12"/>')
        out.append(f'<text class="legend" x="{lx + 16:.1f}" y="{ly}">{escape(outcome_label(outcome))}</text>')
    out.append("</svg>")
    return "".join(out)
