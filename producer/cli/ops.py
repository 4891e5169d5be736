"""Operations: reconcile the store and the queue."""

from __future__ import annotations

import typer

from producer.cli.app import app, console, run, settings


@app.command()
def sweep(grace: float = typer.Option(60.0, help="leave jobs touched in the last N seconds alone")) -> None:
    """Re-enqueue active jobs that Redis no longer holds (after a Redis restart or flush)."""
    from arq.connections import ArqRedis

    from shared.queue import JobQueue
    from shared.redis_keys import Keys
    from shared.store import Store
    from worker.sweeper import sweep_once

    async def go() -> None:
        s = settings()
        store = Store.open(s.resolved_database_url())
        redis = ArqRedis.from_url(s.redis_url)
        try:
            report = await sweep_once(store, JobQueue(redis, Keys(s.redis_prefix)), grace_s=grace)
        finally:
            await redis.aclose()
            await store.close()
        console.print(f"checked {report.checked} active jobs; re-enqueued {report.requeued}")

    run(go())


@app.command()
def failures(
    batch: str | None = typer.Option(None, "--batch", help="only this batch"),
    since_hours: float | None = typer.Option(None, "--since-hours", help="only jobs that failed in the last N hours"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Dead letters: failed jobs grouped by error class, provider and model, with sample messages."""
    import dataclasses
    import json
    from datetime import timedelta

    from rich.markup import escape
    from rich.table import Table

    from shared.store import Store, queries
    from shared.timeutil import utcnow

    async def go() -> list[queries.FailureGroup]:
        store = Store.open(settings().resolved_database_url())
        try:
            since = utcnow() - timedelta(hours=since_hours) if since_hours is not None else None
            return await store.read(queries.failures(batch_id=batch, since=since))
        finally:
            await store.close()

    groups = run(go())
    if as_json:
        print(json.dumps([dataclasses.asdict(g) for g in groups], indent=2, default=str))
        return
    if not groups:
        console.print("no failed jobs")
        return
    t = Table(title=f"{sum(g.count for g in groups)} failed job(s)", title_justify="left")
    for col in ("count", "error class", "provider", "model", "http", "sample message"):
        t.add_column(col, overflow="fold")
    for g in groups:
        statuses = ", ".join(f"{k} x{v}" for k, v in g.http_status.items())
        sample = escape(g.samples[0] if g.samples else "")[:160]
        t.add_row(str(g.count), str(g.error_class), g.provider or "-", g.model or "-", statuses, sample)
    console.print(t)
