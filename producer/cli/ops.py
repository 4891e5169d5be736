"""Operations: reconcile the store and the queue, dead letters, re-queue, cancel, purge."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from producer.cli.app import ConfigOption, app, config, console, err_console, run, settings
from producer.cli.keys import parse_when


@app.command()
def sweep(
    grace: float = typer.Option(60.0, help="leave jobs touched in the last N seconds alone"),
    seal_after: float = typer.Option(
        600.0, help="seal batches still `submitting` with no line stored for N seconds (their producer died)"
    ),
) -> None:
    """Re-enqueue active jobs that Redis no longer holds (after a Redis restart or flush), and seal batches
    whose producer died mid-upload so they can complete. The workers do both on their own every
    `worker.sweep_every_s`; this is for when none is running."""
    from arq.connections import ArqRedis

    from shared.queue import JobQueue
    from shared.redis_keys import Keys
    from shared.store import Store
    from shared.webhooks import announce
    from worker.sweeper import seal_stale_submissions, sweep_once

    async def go() -> None:
        s = settings()
        store = Store.open(s.resolved_database_url())
        redis = ArqRedis.from_url(s.redis_url)
        try:
            report = await sweep_once(store, JobQueue(redis, Keys(s.redis_prefix)), grace_s=grace)
            sealed, completed = await seal_stale_submissions(store, stale_s=seal_after)
            for bid in completed:
                await announce(redis, s.redis_prefix, bid)
        finally:
            await redis.aclose()
            await store.close()
        console.print(f"checked {report.checked} active jobs; re-enqueued {report.requeued}")
        if sealed:
            console.print(f"sealed {sealed} batches a dead producer left `submitting` ({len(completed)} now complete)")

    run(go())


# ---------------------------------------------------------------------------------------------- filters
StateOption = typer.Option([], "--state", help="failed | cancelled | budget_exhausted (repeatable; default failed)")
BatchOption = typer.Option(None, "--batch", help="only this batch")
ErrorClassOption = typer.Option([], "--error-class", help="only jobs that failed with this class (repeatable)")
ProviderOption = typer.Option(None, "--provider", help="only jobs whose last call went to this provider")
ModelOption = typer.Option(None, "--model", help="only jobs whose last call was to this model")
KeyOption = typer.Option(None, "--key", help="only jobs of this router key (id)")
SinceOption = typer.Option(None, "--since", help="finished at or after: date, time or duration (7d)")
UntilOption = typer.Option(None, "--until", help="finished before: date, time or duration (1h)")


def _filter(
    state: list[str],
    batch: str | None,
    error_class: list[str],
    provider: str | None,
    model: str | None,
    key: str | None,
    since: str | None,
    until: str | None,
    job_ids: list[str] | None = None,
) -> Any:
    from shared.errors import InputError
    from shared.store.selection import JobFilter

    try:
        return JobFilter.parse(
            states=state, batch_id=batch, error_classes=error_class, provider=provider, model=model,
            api_key_id=key, since=since, until=until, job_ids=job_ids,
        )  # fmt: skip
    except InputError as e:
        raise typer.BadParameter(e.message) from None


def _requeue_hint(flt: Any) -> str:
    import shlex

    return "routeyard requeue " + " ".join(shlex.quote(a) for a in flt.as_args())


@app.command()
def failures(
    batch: str | None = BatchOption,
    state: list[str] = StateOption,
    error_class: list[str] = ErrorClassOption,
    provider: str | None = ProviderOption,
    model: str | None = ModelOption,
    key: str | None = KeyOption,
    since: str | None = SinceOption,
    until: str | None = UntilOption,
    since_hours: float | None = typer.Option(None, "--since-hours", help="only jobs that failed in the last N hours"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Dead letters: failed jobs grouped by error class, provider and model, with sample messages and the
    `routeyard requeue` command that takes each group."""
    import dataclasses
    from datetime import timedelta

    from rich.markup import escape
    from rich.table import Table

    from shared.store import Store, queries
    from shared.timeutil import utcnow

    if since_hours is not None and since is None:
        since = (utcnow() - timedelta(hours=since_hours)).isoformat()
    flt = _filter(state, batch, error_class, provider, model, key, since, until)

    async def go() -> list[queries.FailureGroup]:
        store = Store.open(settings().resolved_database_url())
        try:
            return await store.read(queries.failures(where=flt))
        finally:
            await store.close()

    groups = run(go())

    def hint(g: queries.FailureGroup) -> str:
        narrowed = dataclasses.replace(
            flt,
            error_classes=(g.error_class,) if g.error_class else flt.error_classes,
            provider=g.provider or flt.provider,
            model=g.model or flt.model,
        )
        return _requeue_hint(narrowed)

    if as_json:
        out = [{**dataclasses.asdict(g), "requeue": hint(g)} for g in groups]
        print(json.dumps(out, indent=2, default=str))
        return
    if not groups:
        console.print("no matching jobs")
        return
    t = Table(title=f"{sum(g.count for g in groups)} job(s)", title_justify="left")
    for col in ("count", "error class", "provider", "model", "http", "sample message"):
        t.add_column(col, overflow="fold")
    for g in groups:
        statuses = ", ".join(f"{k} x{v}" for k, v in g.http_status.items())
        sample = escape(g.samples[0] if g.samples else "")[:160]
        t.add_row(str(g.count), str(g.error_class), g.provider or "-", g.model or "-", statuses, sample)
    console.print(t)
    console.print("re-queue a group (add --dry-run to preview):")
    for g in groups[:5]:
        console.print("  " + escape(hint(g)), soft_wrap=True)


@app.command()
def requeue(
    job: list[str] = typer.Option([], "--job", help="only this job (repeatable)"),
    batch: str | None = BatchOption,
    state: list[str] = StateOption,
    error_class: list[str] = ErrorClassOption,
    provider: str | None = ProviderOption,
    model: str | None = ModelOption,
    key: str | None = KeyOption,
    since: str | None = SinceOption,
    until: str | None = UntilOption,
    klass: str | None = typer.Option(None, "--class", help="route them in this class from now on"),
    models: str | None = typer.Option(None, "--models", help="comma-separated models to route them to"),
    provider_ignore: str | None = typer.Option(None, "--provider-ignore", help="comma-separated providers to avoid"),
    dry_run: bool = typer.Option(False, "--dry-run", help="count and show a sample; change nothing"),
    as_json: bool = typer.Option(False, "--json"),
    cfg: Path | None = ConfigOption,
) -> None:
    """Put failed (or cancelled, or held) jobs back in the queue, with a fresh allowance of calls and time;
    their earlier calls stay in the ledger. Running it twice does not queue a job twice."""
    from arq.connections import ArqRedis
    from rich.markup import escape

    from producer.requeue import Rewrite
    from producer.requeue import requeue as do_requeue
    from shared.catalog import Catalog
    from shared.queue import JobQueue
    from shared.redis_keys import Keys
    from shared.store import Store

    flt = _filter(state, batch, error_class, provider, model, key, since, until, job)
    rewrite = Rewrite(
        class_name=klass,
        models=tuple(m.strip() for m in models.split(",") if m.strip()) if models else None,
        provider_ignore=tuple(p.strip() for p in provider_ignore.split(",") if p.strip()) if provider_ignore else None,
    )
    catalog = Catalog.from_config(config(cfg))

    async def go() -> Any:
        s = settings()
        store = Store.open(s.resolved_database_url())
        redis = None if dry_run else ArqRedis.from_url(s.redis_url)
        try:
            queue = JobQueue(redis, Keys(s.redis_prefix)) if redis is not None else None
            return await do_requeue(store, queue, flt, catalog=catalog, rewrite=rewrite, dry_run=dry_run)
        finally:
            if redis is not None:
                await redis.aclose()
            await store.close()

    report = run(go())
    if as_json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        verb = "would re-queue" if dry_run else "re-queued"
        n = report.matched if dry_run or report.errors else report.requeued
        by_state = ", ".join(f"{k} {v}" for k, v in sorted(report.by_state.items()))
        console.print(f"{verb} {n} job(s)" + (f" ({by_state})" if by_state else ""))
        if report.purged:
            console.print(f"{report.purged} matching job(s) were purged and cannot run again")
        for item in report.sample:
            console.print(
                f"  {item['job_id']}  {item['state']}  {item['error_class'] or '-'}  "
                f"{item['provider'] or '-'}/{item['model'] or '-'}  {escape(item['error_message'][:80])}",
                soft_wrap=True,
            )
    if report.errors:
        err_console.print(f"[red]nothing changed:[/red] {len(report.errors)} job(s) could not be routed as rewritten:")
        for e in report.errors[:10]:
            err_console.print("  " + escape(e))
        raise typer.Exit(1)


@app.command()
def cancel(
    job: list[str] = typer.Option([], "--job", help="a job to cancel (repeatable)"),
    batch: str | None = typer.Option(None, "--batch", help="cancel every unfinished job of this batch"),
) -> None:
    """Cancel queued, running and held jobs. A running call finishes and is recorded; its job stays cancelled."""
    from producer.requeue import cancel as do_cancel
    from shared.store import Store

    if bool(job) == (batch is not None):
        raise typer.BadParameter("give --job (one or more) or --batch")

    async def go() -> int:
        store = Store.open(settings().resolved_database_url())
        try:
            return await do_cancel(store, job_ids=job or None, batch_id=batch)
        finally:
            await store.close()

    n = run(go())
    console.print(f"cancelled {n} job(s)" + (f"; batch {batch} cancelled" if batch and n else ""))


@app.command()
def purge(
    older_than: str = typer.Option(..., "--older-than", help="retention period, e.g. 30d (or a date)"),
    delete_jobs: bool = typer.Option(
        False, "--delete-jobs", help="delete whole jobs and their ledger rows (reports lose them), not only bodies"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="count; change nothing"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Drop prompts and answers of jobs finished before the retention period; the ledger, costs, tokens and
    batch totals stay for reports and invoices. `--delete-jobs` removes the jobs and their ledger rows."""
    from producer.retention import purge as do_purge
    from shared.store import Store
    from shared.timeutil import utcnow

    cutoff: datetime = parse_when(older_than, now=utcnow())

    async def go() -> Any:
        store = Store.open(settings().resolved_database_url())
        try:
            return await do_purge(store, cutoff, delete_jobs=delete_jobs, dry_run=dry_run)
        finally:
            await store.close()

    report = run(go())
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        return
    verb = "would purge" if dry_run else "purged"
    what = "whole jobs" if delete_jobs else "prompts and answers of"
    extra = f" and {report.attempts} ledger row(s)" if delete_jobs else ""
    console.print(
        f"{verb} {what} {report.jobs} job(s){extra} finished before {cutoff:%Y-%m-%d %H:%M} UTC "
        f"({report.bytes:,} characters)"
    )
