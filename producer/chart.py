"""Spend over time as one self-contained HTML file: an inline SVG stacked bar chart (a bar per UTC day,
a colour per series — provider, model, key, team, …), a legend, hover titles, and the same numbers as a
table under it. No script, no stylesheet or font from elsewhere, nothing fetched: it opens from disk, from an
e-mail attachment or an air-gapped host alike, and every number in it is also in a
`<script type="application/json" id="routeyard-data">` block (exact decimal strings) for whoever wants to
re-plot it.

Why HTML + SVG and not a PNG: no plotting dependency (matplotlib would add ~40 MB for one chart), text stays
selectable and sharp at any zoom, and hovering a bar shows its exact amount.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from shared.reports import Report

PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
]
OTHER = "other"
MAX_SERIES = len(PALETTE) - 1
"""Series beyond the largest ones are summed into `other`, so the colours stay tellable apart."""
W, H = 960, 380
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 20, 60


def _days(first: str, last: str) -> list[str]:
    d, end = date.fromisoformat(first), date.fromisoformat(last)
    out = []
    while d <= end:
        out.append(d.isoformat())
        d += timedelta(days=1)
    return out


def _nice_max(value: Decimal) -> Decimal:
    """A round axis maximum at or above `value` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return Decimal(1)
    exp = value.adjusted()
    for step in (1, 2, 5, 10):
        candidate = Decimal(step).scaleb(exp)
        if candidate >= value:
            return candidate
    return Decimal(10).scaleb(exp)


def _usd(amount: Decimal) -> str:
    places = 2 if amount >= 1 else 4 if amount >= Decimal("0.01") else 6
    return f"${amount:,.{places}f}"


def chart_data(report: Report, series_by: str) -> dict[str, Any]:
    """The chart's numbers from a report grouped by ("day", series_by): days, series and cost per (series,
    day) as decimal strings, with the unpriced-call counts per day."""
    if set(report.by) != {"day", series_by} and report.by != ("day",):
        raise ValueError(f"the chart needs a report by day and {series_by}, got {report.by}")
    per: dict[str, dict[str, Decimal]] = {}
    unpriced: dict[str, int] = {}
    totals: dict[str, Decimal] = {}
    for r in report.rows:
        day = str(r.group["day"])
        name = str(r.group.get(series_by) or "-") if series_by != "day" else "total"
        per.setdefault(name, {})[day] = per.get(name, {}).get(day, Decimal(0)) + r.total
        totals[name] = totals.get(name, Decimal(0)) + r.total
        if r.unpriced_calls:
            unpriced[day] = unpriced.get(day, 0) + r.unpriced_calls
    ranked = sorted(totals, key=lambda n: (-totals[n], n))
    keep, rest = ranked[:MAX_SERIES], ranked[MAX_SERIES:]
    if rest:
        merged: dict[str, Decimal] = {}
        for name in rest:
            for day, v in per.pop(name).items():
                merged[day] = merged.get(day, Decimal(0)) + v
        per[OTHER] = merged
        keep.append(OTHER)
    days_seen = sorted({d for s in per.values() for d in s} | set(unpriced))
    first = report.since.date().isoformat() if report.since else (days_seen[0] if days_seen else None)
    last_dt = report.until - timedelta(microseconds=1) if report.until else None
    last = last_dt.date().isoformat() if last_dt else (days_seen[-1] if days_seen else None)
    days = _days(first, last) if first and last and first <= last else days_seen
    return {
        "metric": "cost in USD (credits + BYOK upstream + fees)",
        "series_by": series_by,
        "days": days,
        "series": [{"name": n, "values": {d: str(per[n][d]) for d in days if d in per[n]}} for n in keep],
        "unpriced_calls": unpriced,
        "total": str(report.totals.total),
    }


def render_html(report: Report, series_by: str = "provider", *, title: str = "routeyard spend") -> str:
    data = chart_data(report, series_by)
    days: list[str] = data["days"]
    series = data["series"]
    stacks = {d: Decimal(0) for d in days}
    for s in series:
        for d, v in s["values"].items():
            stacks[d] += Decimal(v)
    top = _nice_max(max(stacks.values(), default=Decimal(0)))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / max(1, len(days))
    bar_w = max(1.0, slot * 0.8)

    def y(v: Decimal) -> float:
        return TOP + plot_h - float(v / top) * plot_h

    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{escape(title)}" font-family="sans-serif" font-size="11">'
    ]
    for i in range(5):  # y grid and labels
        v = top * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#555">{escape(_usd(v))}</text>'
        )
    label_every = max(1, len(days) // 15)
    for i, d in enumerate(days):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base = Decimal(0)
        for k, s in enumerate(series):
            v = Decimal(s["values"].get(d, "0"))
            if v <= 0:
                continue
            y0, y1 = y(base), y(base + v)
            parts.append(
                f'<rect x="{x:.1f}" y="{y1:.1f}" width="{bar_w:.1f}" height="{max(0.5, y0 - y1):.1f}" '
                f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(d)} · {escape(s["name"])}: '
                f"{escape(_usd(v))}</title></rect>"
            )
            base += v
        if d in data["unpriced_calls"]:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y(base) - 4:.1f}" text-anchor="middle" fill="#c00">?'
                f"<title>{data['unpriced_calls'][d]} call(s) of unknown price, not in the bar</title></text>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{H - BOTTOM + 14}" text-anchor="end" fill="#555" '
                f'transform="rotate(-45 {x + bar_w / 2:.1f} {H - BOTTOM + 14})">{escape(d[5:])}</text>'
            )
    parts.append(
        f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(Decimal(0)):.1f}" y2="{y(Decimal(0)):.1f}" stroke="#333"/>'
    )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><span class="swatch" style="background:{PALETTE[k % len(PALETTE)]}"></span>'
        f"{escape(s['name'])}</span>"
        for k, s in enumerate(series)
    )
    head = "".join(f"<th>{escape(s['name'])}</th>" for s in series)
    body = "".join(
        f"<tr><td>{escape(d)}</td>"
        + "".join(f"<td>{escape(_usd(Decimal(s['values'].get(d, '0'))))}</td>" for s in series)
        + f"<td><b>{escape(_usd(stacks[d]))}</b></td></tr>"
        for d in days
    )
    period = f"{days[0]} to {days[-1]}" if days else "no calls"
    unknown = sum(data["unpriced_calls"].values())
    note = f" · {unknown} call(s) of unknown price are not included (marked ?)" if unknown else ""
    sub = f"{period} · by {series_by} · total {_usd(Decimal(data['total']))}{note}"
    payload = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
.sub {{ color: #555; margin-bottom: 12px; }}
.key {{ margin-right: 14px; white-space: nowrap; }}
.swatch {{ display: inline-block; width: 11px; height: 11px; margin-right: 5px; vertical-align: -1px; }}
table {{ border-collapse: collapse; margin-top: 18px; font-size: 12px; }}
td, th {{ border-bottom: 1px solid #eee; padding: 3px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head>
<body>
<h2>{escape(title)}</h2>
<div class="sub">{escape(sub)}</div>
{"".join(parts)}
<div>{legend}</div>
<table><thead><tr><th>day (UTC)</th>{head}<th>total</th></tr></thead><tbody>{body}</tbody></table>
<script type="application/json" id="routeyard-data">{payload}</script>
</body></html>
"""


__all__ = ["chart_data", "render_html"]
