"""`routeyard report`: usage from the ledger by key, team, project, environment, class, model, provider and
day — as a table, CSV or JSON — with a spend-over-time chart (self-contained HTML) and a reconciliation
view per provider key to check against providers' invoices. See `shared.reports` for the conventions."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from producer.cli.app import app, console, err_console, run, settings
from producer.cli.keys import parse_when
from shared.money import fmt_usd
from shared.reports import DIMENSIONS, Report, ReportRow, Where


def _usd(amount: Decimal, unpriced: int = 0) -> str:
    return fmt_usd(amount, 6) + (f" + {unpriced} unknown" if unpriced else "")


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def report_table(report: Report) -> Table:
    span = f"{report.since:%Y-%m-%d} to {report.until:%Y-%m-%d}" if report.since and report.until else ""
    t = Table(title=f"usage by {', '.join(report.by)} {span}".strip(), title_justify="left")
    for d in report.by:
        t.add_column(d)
    numeric = ("jobs", "calls", "fail", "input tok", "output tok", "credits", "byok upstream", "fees", "total")
    for col in (*numeric, "p50 ms", "p95 ms"):
        t.add_column(col, justify="right")

    def cells(r: ReportRow) -> list[str]:
        return [
            f"{r.jobs:,}",
            f"{r.calls:,}",
            _pct(r.failure_rate),
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
            fmt_usd(r.credits, 6),
            fmt_usd(r.byok, 6),
            fmt_usd(r.fees, 6),
            _usd(r.total, r.unpriced_calls),
            "-" if r.p50_ms is None else str(r.p50_ms),
            "-" if r.p95_ms is None else str(r.p95_ms),
        ]

    for r in report.rows:
        t.add_row(*[escape(str(r.group[d] if r.group[d] is not None else "-")) for d in report.by], *cells(r))
    t.add_section()
    t.add_row("total", *([""] * (len(report.by) - 1)), *cells(report.totals))
    return t


def _csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def recon_table(rows: list[Any]) -> Table:
    t = Table(title="reconciliation by provider key and day (check against the provider's invoice)")
    for col in ("provider", "key ref", "day"):
        t.add_column(col)
    for col in (
        "billed calls",
        "input tok",
        "output tok",
        "cost",
        "failed (not billed)",
        "abandoned",
        "abandoned est.",
    ):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            escape(r.provider),
            escape(r.key_ref or "-"),
            r.day,
            f"{r.billed_calls:,}",
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
            _usd(r.cost, r.unpriced_calls),
            f"{r.failed_calls:,}",
            f"{r.abandoned_calls:,}",
            _usd(r.abandoned_estimate, r.abandoned_unpriced),
        )
    return t


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"written to {output}")


@app.command()
def report(
    by: list[str] = typer.Option(["provider"], "--by", help=f"group by ({' | '.join(DIMENSIONS)}); repeatable"),
    since: str = typer.Option("30d", help="from: date, time or duration (30d)"),
    until: str | None = typer.Option(None, help="to (exclusive): date, time or duration; default now"),
    key: str | None = typer.Option(None, "--key", help="only this router key (id)"),
    team: str | None = typer.Option(None),
    project: str | None = typer.Option(None),
    environment: str | None = typer.Option(None, "--env"),
    provider: str | None = typer.Option(None),
    model: str | None = typer.Option(None),
    batch: str | None = typer.Option(None),
    klass: str | None = typer.Option(None, "--class"),
    fmt: str = typer.Option("table", "--format", help="table | csv | json"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write CSV or JSON here"),
    chart: Path | None = typer.Option(None, "--chart", help="also write a spend-over-time chart (HTML) here"),
    chart_by: str = typer.Option("provider", "--chart-by", help="one colour per: provider, model, key, team, …"),
    reconcile: bool = typer.Option(False, "--reconcile", help="per provider key and day, for invoices"),
) -> None:
    """Usage and spend from the ledger: jobs, calls, tokens, cost split into credits / BYOK upstream / fees,
    failure rate and latency percentiles. Totals equal the ledger exactly."""
    from shared.reports import reconciliation, usage_report
    from shared.store import Store
    from shared.timeutil import utcnow

    for d in [*by, chart_by]:
        if d not in DIMENSIONS:
            raise typer.BadParameter(f"{d!r}: choose among {', '.join(DIMENSIONS)}")
    if fmt not in ("table", "csv", "json"):
        raise typer.BadParameter("--format is table, csv or json")
    now = utcnow()
    start: datetime = parse_when(since, now=now)
    end: datetime = parse_when(until, now=now) if until else now
    where = Where(key, team, project, environment, provider, model, batch, klass)

    async def go() -> tuple[Any, Report | None]:
        store = Store.open(settings().resolved_database_url())
        try:
            main: Any = (
                await store.read(reconciliation(start, end, provider))
                if reconcile
                else await store.read(usage_report(tuple(by), start, end, where))
            )
            series = None
            if chart is not None:
                dims = ("day",) if chart_by == "day" else ("day", chart_by)
                series = await store.read(usage_report(dims, start, end, where))
            return main, series
        finally:
            await store.close()

    result, series = run(go())
    if reconcile:
        rows = [r.to_json() for r in result]
        if fmt == "json":
            _emit(json.dumps(rows, indent=2), output)
        elif fmt == "csv":
            _emit(_csv(rows), output)
        else:
            console.print(recon_table(result))
    elif fmt == "json":
        _emit(json.dumps(result.to_json(), indent=2), output)
    elif fmt == "csv":
        _emit(_csv([r.to_json() for r in result.rows]), output)
    else:
        console.print(report_table(result))
    if chart is not None and series is not None:
        from producer.chart import render_html

        chart.write_text(render_html(series, chart_by, title="routeyard spend by day"), encoding="utf-8")
        err_console.print(f"chart written to {chart}")
