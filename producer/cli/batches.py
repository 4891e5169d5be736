"""Batch commands: run (embedded, end to end), submit, status, results."""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from producer.cli.app import ConfigOption, app, config, console, err_console, run, settings, setup_logging
from producer.cli.render import batch_line, breakdown_table, errors_table
from producer.client import BatchOptions, Producer, SubmitReport, iter_jsonl
from shared.catalog import Catalog
from shared.models import Priority
from shared.store import Store, queries


def _options(
    file: Path, klass: str | None, priority: str | None, max_total_cost: str | None, strict: bool
) -> BatchOptions:
    return BatchOptions(
        default_class=klass,
        priority=Priority[priority.upper()] if priority else None,
        max_total_cost=Decimal(max_total_cost) if max_total_cost else None,
        source=str(file),
        strict=strict,
    )


def _report_errors(report: SubmitReport, errors_out: Path | None) -> None:
    if not report.errors:
        return
    err_console.print(errors_table(report.errors))
    if errors_out is not None:
        with errors_out.open("w", encoding="utf-8") as f:
            for e in report.errors:
                f.write(json.dumps(e.to_json(), ensure_ascii=False) + "\n")
        err_console.print(f"all rejected lines written to {errors_out}")
    if report.rejected_all:
        err_console.print("[red]--strict: the whole file was rejected; nothing was submitted[/red]")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


async def _follow(producer: Producer, batch_id: str, show: bool) -> dict[str, Any]:
    with _progress() if show else nullcontext() as bar:
        task = bar.add_task("jobs", total=None, detail="") if bar else None

        def update(b: dict[str, Any]) -> None:
            if bar is None or task is None:
                return
            done = b["n_succeeded"] + b["n_failed"] + b["n_cancelled"]
            bar.update(
                task,
                total=b["n_total"],
                completed=done,
                detail=f"ok {b['n_succeeded']} · failed {b['n_failed']} · running {b.get('n_running', 0)}",
            )

        return await producer.wait(batch_id, on_update=update)


async def _write_results(producer: Producer, batch_id: str, out: Path | None, states: list[str] | None) -> int:
    n = 0
    fh = out.open("w", encoding="utf-8") if out is not None else sys.stdout
    try:
        async for line in producer.results(batch_id, states=states):
            fh.write(next(iter_jsonl([line])))
            n += 1
    finally:
        if out is not None:
            fh.close()
    return n


def _summary(batch: dict[str, Any], breakdown: list[dict[str, Any]], wall_s: float) -> None:
    console.print(breakdown_table(breakdown))
    console.print(batch_line(batch))
    rate = batch["n_total"] / wall_s if wall_s > 0 else 0.0
    console.print(f"wall time {wall_s:.2f}s ({rate:.0f} jobs/s)")


@app.command("run")
def run_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL: OpenAI batch lines or plain lines"),
    output: Path = typer.Option(Path("results.jsonl"), "--output", "-o", help="where to write results"),
    klass: str | None = typer.Option(None, "--class", help="class for lines that name none"),
    priority: str | None = typer.Option(None, help="high | normal | low, for every line"),
    max_total_cost: str | None = typer.Option(None, help="budget for the whole batch, in dollars"),
    strict: bool = typer.Option(False, help="reject the whole file if any line is invalid"),
    errors_out: Path | None = typer.Option(None, "--errors", help="write rejected lines (JSONL) here"),
    concurrency: int = typer.Option(256, help="calls in flight"),
    cfg: Path | None = ConfigOption,
    log_level: str = typer.Option("warning", help="debug | info | warning"),
) -> None:
    """Run a batch end to end on embedded defaults: no Redis or database server, simulated providers
    (unless the config points at real ones). Writes results and prints a summary."""
    setup_logging(log_level)
    from producer.embedded import Embedded

    async def go() -> None:
        started = time.perf_counter()
        async with Embedded(settings(), config(cfg), max_in_flight=concurrency) as emb:
            report = await emb.producer.submit_file(file, _options(file, klass, priority, max_total_cost, strict))
            _report_errors(report, errors_out)
            if report.batch_id is None or report.accepted == 0:
                raise typer.Exit(1)
            console.print(f"batch {report.batch_id}: {report.accepted} jobs accepted, {report.rejected} rejected")
            batch = await _follow(emb.producer, report.batch_id, show=sys.stderr.isatty())
            wall = time.perf_counter() - started
            n = await _write_results(emb.producer, report.batch_id, output, None)
            breakdown = await emb.store.read(queries.batch_breakdown(report.batch_id))
        console.print(f"{n} results written to {output}")
        _summary(batch, breakdown, wall)

    run(go())


def _connect(cfg_path: Path | None) -> tuple[Store, Any, Producer]:
    from arq.connections import ArqRedis

    from shared.queue import JobQueue
    from shared.redis_keys import Keys

    s = settings()
    store = Store.open(s.resolved_database_url())
    redis = ArqRedis.from_url(s.redis_url)
    queue = JobQueue(redis, Keys(s.redis_prefix))
    return store, redis, Producer(store, queue, Catalog.from_config(config(cfg_path)))


@app.command()
def submit(
    file: Path = typer.Argument(..., exists=True, dir_okay=False),
    wait: bool = typer.Option(False, "--wait", help="follow the batch with a progress bar until it is done"),
    klass: str | None = typer.Option(None, "--class"),
    priority: str | None = typer.Option(None),
    max_total_cost: str | None = typer.Option(None),
    strict: bool = typer.Option(False),
    errors_out: Path | None = typer.Option(None, "--errors"),
    webhook_url: str | None = typer.Option(None, "--webhook-url", help="signed webhooks for this batch go here"),
    webhook_events: str | None = typer.Option(
        None, "--webhook-events", help="comma-separated (default: batch.completed,batch.failed,batch.cancelled)"
    ),
    cfg: Path | None = ConfigOption,
) -> None:
    """Store and enqueue a JSONL file for the workers (Redis from REDIS_URL); prints the batch id."""

    async def go() -> None:
        options = _options(file, klass, priority, max_total_cost, strict)
        options.webhook_url = webhook_url
        options.webhook_events = [e.strip() for e in webhook_events.split(",")] if webhook_events else None
        store, redis, producer = _connect(cfg)
        try:
            if webhook_url is not None:
                from shared.crypto import load_box

                producer.box = load_box(settings().home)  # webhook secrets are stored encrypted
            producer.check_options(options)  # a refused webhook target fails before anything is stored
            report = await producer.submit_file(file, options)
            _report_errors(report, errors_out)
            if report.batch_id is None:
                raise typer.Exit(1)
            print(report.batch_id)
            err_console.print(f"{report.accepted} jobs accepted, {report.rejected} rejected")
            if report.webhook is not None:
                err_console.print(
                    f"webhook signing secret (shown once — store it to verify deliveries): {report.webhook.secret}",
                    highlight=False,
                )
            if wait:
                batch = await _follow(producer, report.batch_id, show=True)
                err_console.print(batch_line(batch))
        finally:
            await redis.aclose()
            await store.close()

    run(go())


@app.command()
def status(
    batch_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Counts, cost so far and a breakdown by class, model and provider."""

    async def go() -> None:
        store = Store.open(settings().resolved_database_url())
        try:
            b = await store.read(queries.batch(batch_id))
            if b is None:
                err_console.print(f"[red]no batch {batch_id}[/red]")
                raise typer.Exit(1)
            breakdown = await store.read(queries.batch_breakdown(batch_id))
        finally:
            await store.close()
        if as_json:
            print(json.dumps({"batch": b, "breakdown": breakdown}, default=str, indent=2))
            return
        console.print(breakdown_table(breakdown))
        console.print(batch_line(b))

    run(go())


@app.command()
def results(
    batch_id: str = typer.Argument(...),
    output: Path | None = typer.Option(None, "--output", "-o", help="default: standard output"),
    state: list[str] = typer.Option([], "--state", help="only jobs in this state (repeatable)"),
    cfg: Path | None = ConfigOption,
) -> None:
    """Write a batch's results as JSONL (OpenAI batch output shape plus routeyard's fields)."""

    async def go() -> None:
        store = Store.open(settings().resolved_database_url())
        try:
            producer = Producer(store, None, Catalog.from_config(config(cfg)))  # type: ignore[arg-type]
            if await producer.batch(batch_id) is None:
                err_console.print(f"[red]no batch {batch_id}[/red]")
                raise typer.Exit(1)
            n = await _write_results(producer, batch_id, output, state or None)
        finally:
            await store.close()
        if output is not None:
            err_console.print(f"{n} results written to {output}")

    run(go())
