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
