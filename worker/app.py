"""`routeyard worker`: an arq worker that also runs routeyard's dispatcher.

arq hosts the process — connection pool, signal handling, health-check key, and its own queue for the
fleet's housekeeping (the sweeper runs as an arq cron job, so exactly one worker sweeps each period). The
inference jobs themselves flow through routeyard's dispatch queue (`shared.queue`): arq has no priorities
and one arq job per routeyard job costs ~20 Redis commands, where a leased id costs a fraction of one.

SIGTERM/SIGINT: stop claiming, let running jobs finish for `grace_s`, hand the rest back to the queue
without burning a try, then let arq shut down. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from signal import Signals
from typing import Any

from arq import cron, func
from arq.connections import ArqRedis
from arq.worker import Worker

from shared.config import RouteyardConfig
from shared.queue import JobQueue
from shared.redis_keys import Keys
from shared.settings import Settings
from shared.store import Store
from shared.webhooks import announce
from worker import webhooks
from worker.context import Runtime
from worker.dispatcher import Dispatcher
from worker.metrics import WorkerMetrics
from worker.runtime import build_runtime
from worker.sweeper import resume_held, seal_stale_submissions, sweep_once

log = logging.getLogger("routeyard.worker")


async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """arq job: reconcile the store and the queue (see `worker.sweeper`)."""
    rt: Runtime = ctx["runtime"]
    report = await sweep_once(rt.store, rt.queue, grace_s=rt.config.worker.sweep_grace_s)
    reclaimed = await rt.admission.reclaim_expired()
    resumed = await resume_held(rt.store, rt.queue, rt.scope_state)
    sealed, completed = await seal_stale_submissions(rt.store, stale_s=rt.config.worker.stale_submission_s)
    for bid in completed:  # finished before it was sealed: no job's write completed it, so announce it here
        await announce(rt.queue.redis, rt.queue.keys.prefix, bid)
    return {
        "checked": report.checked,
        "requeued": report.requeued,
        "reclaimed": reclaimed,
        "resumed": resumed,
        "sealed": sealed,
    }


class RouteyardWorker(Worker):
    def __init__(
        self,
        *,
        settings: Settings,
        config: RouteyardConfig,
        redis_pool: ArqRedis,
        store: Store | None = None,
        farm: Any = None,
        max_in_flight: int = 256,
        grace_s: float = 25.0,
        handle_signals: bool = True,
        sweep_every_s: int | None = None,
        worker_id: str | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self._store = store
        self._owns_store = store is None
        self._farm = farm
        self._max_in_flight = max_in_flight
        self.grace_s = grace_s
        self._worker_id = worker_id
        self.runtime: Runtime | None = None
        self.dispatcher: Dispatcher | None = None
        self.webhooks: webhooks.WebhookService | None = None
        self._draining: asyncio.Task[None] | None = None
        self._metrics_port = metrics_port
        self.metrics: WorkerMetrics | None = None
        """Prometheus metrics, when `metrics_port` is given (0: any free port, see `metrics_bound_port`)."""
        self.metrics_bound_port: int | None = None
        prefix = settings.redis_prefix
        seconds = set(range(0, 60, max(1, min(59, sweep_every_s or config.worker.sweep_every_s))))
        super().__init__(
            functions=[func(sweep, name="sweep"), *webhooks.arq_functions()],
            # arq keys cron runs by name: the prefix keeps deployments sharing a Redis from skipping each other's
            cron_jobs=[
                cron(sweep, name=f"{prefix}sweep", second=seconds, unique=True, timeout=600),
                *webhooks.arq_cron_jobs(prefix),
            ],
            redis_pool=redis_pool,
            queue_name=f"{prefix}arq:queue",
            health_check_key=f"{prefix}arq:health-check",
            health_check_interval=30,
            on_startup=self._startup,
            on_shutdown=self._shutdown,
            handle_signals=handle_signals,
            # arq's own jobs: webhook deliveries (I/O-bound: up to `webhooks.concurrency` at once) + housekeeping
            max_jobs=config.webhooks.concurrency + 2,
            job_timeout=600,
            keep_result=300,
            poll_delay=0.5,
        )

    async def _startup(self, ctx: dict[str, Any]) -> None:
        if self._store is None:
            self._store = Store.open(self.settings.resolved_database_url())
        queue = JobQueue(self.pool, Keys(self.settings.redis_prefix))
        self.runtime = build_runtime(
            self.settings, self.config, self._store, queue, worker_id=self._worker_id, farm=self._farm
        )
        ctx["runtime"] = self.runtime
        # --- webhooks: deliveries run as arq jobs; the sink hears of terminal writes (see worker.webhooks)
        self.webhooks = webhooks.install(self.runtime, self.pool, ctx)
        # --- end webhooks
        self._store.writer.on_batches_completed = lambda ids: (
            self.runtime.events.batches_completed(ids) if self.runtime else None
        )
        if self._metrics_port is not None:
            self.metrics = WorkerMetrics.install(self.runtime, self._store)
        self.dispatcher = Dispatcher(self.runtime, max_in_flight=self._max_in_flight)
        self.dispatcher.start()
        if self.metrics is not None and self._metrics_port is not None:
            self.metrics.start(self.dispatcher)
            self.metrics_bound_port = self.metrics.serve(self._metrics_port)
            log.info("metrics on :%d/metrics", self.metrics_bound_port)
        log.info(
            "worker %s started: up to %d calls in flight, store %s",
            self.runtime.worker_id,
            self._max_in_flight,
            self._store.dialect,
        )

    async def _shutdown(self, ctx: dict[str, Any]) -> None:
        await self.drain()
        if self.webhooks is not None:  # webhooks: hand buffered events to the queue, close the HTTP client
            await self.webhooks.aclose()
        if self.metrics is not None:
            await self.metrics.aclose()
        if self.runtime is not None:
            await self.runtime.aclose()
        if self._store is not None:
            if self._owns_store:
                await self._store.close()
            else:
                await self._store.writer.flush()

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop claiming and hand back what does not finish within the grace period. Idempotent."""
        if self.dispatcher is None:
            return
        if self._draining is None:
            self._draining = asyncio.ensure_future(self.dispatcher.drain(self.grace_s if grace_s is None else grace_s))
        await asyncio.shield(self._draining)

    def handle_sig(self, signum: Signals) -> None:
        if self._draining is not None or self.dispatcher is None:
            super().handle_sig(signum)  # second signal, or nothing to drain: stop now
            return
        log.info("signal %s: finishing running jobs (up to %.0fs), then stopping", Signals(signum).name, self.grace_s)
        self.loop.create_task(self._drain_then_stop(signum))

    async def _drain_then_stop(self, signum: Signals) -> None:
        await asyncio.gather(self.drain(), self._settle_arq_jobs(self.grace_s))
        super().handle_sig(signum)

    async def _settle_arq_jobs(self, grace_s: float) -> None:
        """Stop taking arq jobs (webhook deliveries, sweeps) and give those running `grace_s` to finish; what
        is still running then is cancelled by arq, and a cut delivery is tried again by `webhook_sweep`."""
        self.allow_pick_jobs = False
        running = [t for t in self.tasks.values() if not t.done()]
        if running:
            await asyncio.wait(running, timeout=grace_s)

    async def close(self) -> None:
        """arq's close, minus one trap: it gathers the jobs it has just cancelled, and a job cancelled before
        its own error handling began re-raises CancelledError there — which skipped `on_shutdown`, so the
        store was never flushed and closed. Cancelled jobs are reaped here first."""
        if not self._handle_signals:
            self.handle_sig(Signals.SIGUSR1)
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            self.tasks.clear()
        await super().close()

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop a worker started with `async_run()` (embedded mode, tests)."""
        grace = self.grace_s if grace_s is None else grace_s
        await asyncio.gather(self.drain(grace_s), self._settle_arq_jobs(grace))
        if self.main_task is not None:
            self.main_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.main_task
        await self.close()
