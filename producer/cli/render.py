"""Tables people read: batch summaries and line errors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.markup import escape
from rich.table import Table

from producer.ingest import LineError
from shared.money import fmt_usd


def errors_table(errors: list[LineError], limit: int = 20) -> Table:
    t = Table(title=f"{len(errors)} line(s) rejected", title_justify="left")
    t.add_column("line", justify="right")
    t.add_column("custom_id")
    t.add_column("code")
    t.add_column("message", overflow="fold")
    for e in errors[:limit]:
        t.add_row(str(e.line_no), escape(e.custom_id or ""), e.code, escape(e.message))
    if len(errors) > limit:
        t.add_row("…", "", "", f"{len(errors) - limit} more")
    return t


def breakdown_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="calls by class, model and provider", title_justify="left")
    for col, just in [
        ("class", "left"),
        ("model", "left"),
        ("provider", "left"),
        ("calls", "right"),
        ("served", "right"),
        ("input tok", "right"),
        ("output tok", "right"),
        ("cost", "right"),
    ]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    total = Decimal(0)
    unknown = 0
    for r in rows:
        cost = r["cost"]
        if r["unpriced"]:
            unknown += r["unpriced"]
        total += cost or Decimal(0)
        shown = fmt_usd(cost, 6) if cost is not None or not r["unpriced"] else "unknown"
        if r["unpriced"] and cost is not None:
            shown += " + unknown"
        t.add_row(
            r["class_name"],
            r["model"],
            r["provider"],
            str(r["calls"]),
            str(r["served"] or 0),
            f"{r['input_tokens']:,}",
            f"{r['output_tokens']:,}",
            shown,
        )
    t.add_section()
    t.add_row(
        "total",
        "",
        "",
        str(sum(r["calls"] for r in rows)),
        str(sum(r["served"] or 0 for r in rows)),
        f"{sum(r['input_tokens'] for r in rows):,}",
        f"{sum(r['output_tokens'] for r in rows):,}",
        fmt_usd(total, 6) + (f" + {unknown} unpriced call(s)" if unknown else ""),
    )
    return t


def batch_line(b: dict[str, Any]) -> str:
    done = b["n_succeeded"] + b["n_failed"] + b["n_cancelled"]
    return (
        f"batch {b['id']} ({b['state']}): {done}/{b['n_total']} done — {b['n_succeeded']} succeeded, "
        f"{b['n_failed']} failed, {b['n_cancelled']} cancelled, {b.get('n_running', 0)} running, "
        f"{b.get('n_queued', 0)} queued; cost {fmt_usd(b['cost_total'], 6)}"
        + (f" + {b['unpriced_calls']} unpriced call(s)" if b["unpriced_calls"] else "")
    )
