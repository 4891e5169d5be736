"""Webhook delivery, run by the workers on arq's own queue (`{prefix}arq:queue`).

    terminal write that won ──► WebhookSink.job_finished / batches_completed   (on the event loop, no I/O)
        every `flush_s`: batches without a subscription are dropped (one cached lookup per batch)
        ──► arq `webhook_fanout(batch_id, job_events, batch_done)`  one job per batch per flush
              reads the jobs / the batch, writes one delivery row per (event, subscription) — deduplicated
        ──► arq `webhook_deliver(delivery_id)`  one job per try (job id `{delivery}:{try}`)
              SSRF re-check, sign, POST, log the try in `webhook_attempts`, then:
              2xx → succeeded · 410 → subscription disabled, no more deliveries to it ·
              else → next try after `webhooks.schedule_s[try]` ± jitter, until the schedule runs out
    arq cron `webhook_sweep` (one worker a minute): re-enqueues tries Redis lost; fans out again job events
        and announces finished batches whose event never made it out (a worker died before its sink flushed).

Job events are buffered in memory for up to `flush_s` before they reach Redis; those of a worker killed in
that window are found by the sweep (finished jobs without a delivery, up to 15 minutes back), so delivery is
at-least-once. Secrets are decrypted only to sign and never logged; log lines name deliveries by id and
receivers by host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from arq import cron, func
from arq.connections import ArqRedis

from producer.client import output_line
from producer.views import batch_view
from shared.crypto import SecretBox, load_box
from shared.errors import InputError
from shared.events import EventSink, JobFinished, NullSink
from shared.store import Store, queries
from shared.tables import JobState
from shared.tables_webhooks import DeliveryStatus
from shared.timeutil import utcnow
from shared.webhook_store import (
    delivery_for_attempt,
    insert_deliveries,
    jobs_with_own_webhook,
    line_subscription,
    new_delivery,
    overdue_deliveries,
    record_attempt,
    skip_disabled,
    subscribed_batches,
    subscriptions_of,
    unannounced_batches,
    unannounced_jobs,
)
from shared.webhook_targets import check_webhook_url
from shared.webhooks import (
    DELIVER_FUNCTION,
    FANOUT_FUNCTION,
    JOB_FAILED,
    JOB_SUCCEEDED,
    arq_queue_name,
    batch_event,
    batch_message_id,
    envelope,
    job_message_id,
    sign,
)
from worker.context import Runtime

log = logging.getLogger("routeyard.webhooks")
SWEEP_FUNCTION = "webhook_sweep"
JOB_EVENT_RECOVERY_WINDOW = timedelta(minutes=15)
"""How far back the webhook sweep looks for job events a dead worker never handed over."""


class WebhookSink:
    """The worker's `EventSink` for webhooks: cheap on the hot path, batched towards Redis."""

    def __init__(self, store: Store, redis: ArqRedis, queue_name: str, *, flush_s: float = 0.2) -> None:
        self.store = store
        self.redis = redis
        self.queue_name = queue_name
        self.flush_s = flush_s
        self._jobs: dict[str, list[tuple[str, str]]] = {}
        self._done: set[str] = set()
        self._subscribed: OrderedDict[str, bool] = OrderedDict()
        self._cache_size = 100_000
        self._task: asyncio.Task[None] | None = None
        self.enqueued = 0

    def job_finished(self, event: JobFinished) -> None:
        if event.batch_id is None or self._subscribed.get(event.batch_id) is False:
            return
        if event.state not in (JobState.SUCCEEDED.value, JobState.FAILED.value):
            return
        self._jobs.setdefault(event.batch_id, []).append((event.job_id, event.state))
        self._schedule()

    def batches_completed(self, batch_ids: list[str]) -> None:
        fresh = [b for b in batch_ids if self._subscribed.get(b) is not False]
        if fresh:
            self._done.update(fresh)
            self._schedule()

    def _schedule(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_later(), name="webhook-sink")

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_s)
        await self.flush()

    async def flush(self) -> None:
        jobs, done = self._jobs, self._done
        self._jobs, self._done = {}, set()
        batch_ids = set(jobs) | done
        if not batch_ids:
            return
        try:
            unknown = [b for b in batch_ids if b not in self._subscribed]
            if unknown:
                found = await self.store.read(subscribed_batches(unknown))
                for b in unknown:
                    self._remember(b, b in found)
            for b in sorted(batch_ids):
                if self._subscribed.get(b):
                    await self.redis.enqueue_job(
                        FANOUT_FUNCTION, b, jobs.get(b, []), b in done, _queue_name=self.queue_name
                    )
                    self.enqueued += 1
        except Exception:  # Redis or the store is down: the sweep recovers batch events
            log.exception("could not hand %d batches' webhook events to the queue", len(batch_ids))

    def _remember(self, batch_id: str, subscribed: bool) -> None:
        self._subscribed[batch_id] = subscribed
        if len(self._subscribed) > self._cache_size:
            self._subscribed.popitem(last=False)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


class WebhookService:
    """What the arq functions need, built once per worker."""

    def __init__(self, rt: Runtime, redis: ArqRedis, box: SecretBox | None = None) -> None:
        self.rt = rt
        self.redis = redis
        self._box = box
        self.config = rt.config.webhooks
        self.queue_name = arq_queue_name(rt.settings.redis_prefix)
        self.http = httpx.AsyncClient(follow_redirects=False, timeout=self.config.timeout_s)
        self.sink = WebhookSink(rt.store, redis, self.queue_name)

    @property
    def box(self) -> SecretBox:
        """The master key, loaded on first use: a worker that never delivers never needs it."""
        if self._box is None:
            try:
                self._box = load_box(self.rt.settings.home)
            except FileExistsError:  # another process generated the local key this instant
                self._box = load_box(self.rt.settings.home)
        return self._box

    def delay_before(self, attempt: int) -> float | None:
        """Seconds to wait before try `attempt` (1-based), or None when the schedule is exhausted."""
        schedule = self.config.schedule_s
        if attempt > len(schedule):
            return None
        base = schedule[attempt - 1]
        return max(0.0, base * (1 + random.uniform(-self.config.jitter, self.config.jitter)))

    async def enqueue_try(self, delivery_id: str, attempt: int, delay_s: float) -> None:
        await self.redis.enqueue_job(
            DELIVER_FUNCTION,
            delivery_id,
            _job_id=f"{delivery_id}:{attempt}",
            _queue_name=self.queue_name,
            _defer_by=timedelta(seconds=delay_s) if delay_s > 0 else None,
        )

    async def aclose(self) -> None:
        await self.sink.aclose()
        await self.http.aclose()


def _service(ctx: dict[str, Any]) -> WebhookService:
    return ctx["webhooks"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------- fan-out
async def webhook_fanout(
    ctx: dict[str, Any], batch_id: str, job_events: list[list[str]], batch_done: bool
) -> dict[str, int]:
    """arq job: turn a batch's finished jobs (and its end) into delivery rows, then enqueue their first tries."""
    svc = _service(ctx)
    store = svc.rt.store
    subs = await store.read(subscriptions_of(batch_id))
    primaries = [s for s in subs if s["primary"]]
    if not primaries:
        return {"deliveries": 0}
    now = utcnow()
    rows: list[dict[str, Any]] = []
    job_ids = [j for j, _ in job_events]
    if job_ids and not any(e in s["events"].split(",") for s in primaries for e in (JOB_SUCCEEDED, JOB_FAILED)):
        # nobody subscribed to job events: only jobs with their own webhook_url matter (cheap to find)
        job_ids = await store.read(jobs_with_own_webhook(job_ids))
    if job_ids:
        job_rows = await store.read(queries.jobs_by_id(job_ids))
        for job in job_rows:
            event = {JobState.SUCCEEDED.value: JOB_SUCCEEDED, JobState.FAILED.value: JOB_FAILED}.get(job["state"])
            if event is None:
                continue
            payload = envelope(event, output_line(job), now)
            targets = {s["id"]: s["url"] for s in primaries if event in s["events"].split(",")}
            line_url = json.loads(job["spec"]).get("webhook_url")
            if line_url:
                sid = await store.write_direct(line_subscription(primaries[0], line_url))
                targets[sid] = line_url
            for sid, url in targets.items():
                rows.append(
                    new_delivery(
                        sid,
                        url,
                        job_message_id(job["id"]),
                        event,
                        payload,
                        batch_id=batch_id,
                        job_id=job["id"],
                        now=now,
                    )
                )
    if batch_done:
        batch = await store.read(queries.batch_row(batch_id))
        if batch is not None:
            event = batch_event(batch)
            payload = envelope(event, batch_view(batch), now)
            for s in primaries:
                if event in s["events"].split(","):
                    rows.append(
                        new_delivery(
                            s["id"], s["url"], batch_message_id(batch_id), event, payload, batch_id=batch_id,
                            job_id=None, now=now,
                        )
                    )  # fmt: skip
    inserted = await store.write_direct(insert_deliveries(rows))
    for delivery_id in inserted:
        await svc.enqueue_try(delivery_id, 1, svc.delay_before(1) or 0.0)
    return {"deliveries": len(inserted)}


# ---------------------------------------------------------------------------------------------- one try
async def webhook_deliver(ctx: dict[str, Any], delivery_id: str) -> str:
    """arq job: one try of one delivery."""
    svc = _service(ctx)
    store = svc.rt.store
    d = await store.read(delivery_for_attempt(delivery_id))
    if d is None or d["status"] != DeliveryStatus.PENDING.value:
        return "nothing to do"
    if d["subscription_disabled_at"] is not None:
        await store.write_direct(skip_disabled(delivery_id))
        return "subscription disabled"
    attempt = d["attempts"] + 1
    started = utcnow()
    host = urlsplit(d["url"]).hostname or "?"
    status_code: int | None = None
    error: str | None = None
    latency_ms: int | None = None
    try:
        await asyncio.to_thread(
            check_webhook_url, d["url"], allow_private=svc.config.allow_private_targets
        )  # DNS may have changed since submission (rebinding): check again
    except InputError as e:
        outcome = "refused"
        error = e.message
    else:
        timestamp = int(time.time())
        headers = sign(svc.box.decrypt(d["secret_enc"]), d["message_id"], timestamp, d["payload"])
        t0 = time.perf_counter()
        try:
            async with svc.http.stream("POST", d["url"], content=d["payload"].encode(), headers=headers) as resp:
                status_code = resp.status_code
                await _drain(resp)
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}"[:500] or type(e).__name__
        latency_ms = int((time.perf_counter() - t0) * 1000)
        if status_code is not None and 200 <= status_code < 300:
            outcome = "succeeded"
        elif status_code == 410:
            outcome = "disabled"
        else:
            outcome = "retry"
    delay = svc.delay_before(attempt + 1) if outcome == "retry" else None
    if outcome == "retry" and delay is None:
        outcome = "failed"
    moved = await store.write_direct(
        record_attempt(
            d,
            attempt=attempt,
            started_at=started,
            outcome=outcome,
            status_code=status_code,
            latency_ms=latency_ms,
            error=error,
            next_attempt_at=started + timedelta(seconds=delay) if delay is not None else None,
        )
    )
    log.info(
        "webhook %s %s to %s: try %d %s%s",
        delivery_id,
        d["event_type"],
        host,
        attempt,
        outcome,
        f" ({status_code})" if status_code is not None else (f" ({error})" if error else ""),
    )
    if moved and delay is not None:
        await svc.enqueue_try(delivery_id, attempt + 1, delay)
    return outcome


async def _drain(resp: httpx.Response, limit: int = 64 * 1024) -> None:
    """Read (and drop) at most `limit` bytes of the receiver's answer, so a chatty receiver cannot hold us."""
    n = 0
    async for chunk in resp.aiter_raw():
        n += len(chunk)
        if n >= limit:
            break


# ---------------------------------------------------------------------------------------------- sweep
async def webhook_sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """arq cron: put back tries that Redis lost; announce finished batches whose event never got out."""
    svc = _service(ctx)
    store = svc.rt.store
    now = utcnow()
    overdue = await store.read(overdue_deliveries(now - timedelta(seconds=60)))
    for delivery_id, attempts_made in overdue:
        await svc.enqueue_try(delivery_id, attempts_made + 1, 0.0)
    # job events lost with a worker: finished more than a sink flush ago (with room for the fan-out job to
    # have run), recently enough that the scan stays a short index range
    lost: dict[str, list[tuple[str, str]]] = {}
    for batch_id, job_id, state in await store.read(
        unannounced_jobs(now - JOB_EVENT_RECOVERY_WINDOW, now - timedelta(seconds=60))
    ):
        lost.setdefault(batch_id, []).append((job_id, state))
    for batch_id, job_events in lost.items():
        await svc.redis.enqueue_job(FANOUT_FUNCTION, batch_id, job_events, False, _queue_name=svc.queue_name)
    missed = await store.read(unannounced_batches(now - timedelta(days=1)))
    for batch_id in missed:
        await svc.redis.enqueue_job(FANOUT_FUNCTION, batch_id, [], True, _queue_name=svc.queue_name)
    n_lost = sum(len(v) for v in lost.values())
    if overdue or missed or lost:
        log.warning(
            "webhook sweep: re-enqueued %d tries, recovered %d job events, announced %d batches",
            len(overdue),
            n_lost,
            len(missed),
        )
    return {"requeued": len(overdue), "recovered": n_lost, "announced": len(missed)}


# ---------------------------------------------------------------------------------------------- wiring
def arq_functions() -> list[Any]:
    """The arq functions RouteyardWorker registers."""
    timeout = 120
    keep = 60  # seconds arq keeps a result: the tries' record is the webhook_attempts table, not Redis
    return [
        func(webhook_fanout, name=FANOUT_FUNCTION, timeout=timeout, max_tries=3, keep_result=keep),
        func(webhook_deliver, name=DELIVER_FUNCTION, timeout=timeout, max_tries=3, keep_result=keep),
        func(webhook_sweep, name=SWEEP_FUNCTION, timeout=timeout, keep_result=keep),
    ]


def arq_cron_jobs(prefix: str) -> list[Any]:
    return [cron(webhook_sweep, name=f"{prefix}webhook-sweep", second={17}, unique=True, timeout=120)]


def install(rt: Runtime, redis: ArqRedis, ctx: dict[str, Any]) -> WebhookService:
    """Make the worker deliver webhooks: the service for the arq functions, and its sink as the runtime's
    event sink (beside any sink already there)."""
    from shared.events import FanOut

    svc = WebhookService(rt, redis)
    ctx["webhooks"] = svc
    current: EventSink = rt.events
    rt.events = svc.sink if isinstance(current, NullSink) else FanOut(current, svc.sink)
    return svc
