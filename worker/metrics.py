"""Prometheus metrics of a worker (`routeyard worker --metrics-port N`) and of the queue (any process: the
gateway mounts the same exposition at `/metrics`).

Nothing here touches the hot path beyond in-memory increments: a job's outcome arrives through the
`EventSink` seam (a dict increment per finished job), provider calls through the endpoint statistics the
runner already keeps (`MeteredStats`, one more increment per call), cost and tokens from the store writer's
per-transaction totals, and claims, deferrals and holds from the dispatcher's own counters. Everything is
read when Prometheus scrapes. Queue depth and circuit states need Redis: a background task refreshes them
every few seconds (two pipelined reads), never per job.

    routeyard_jobs_finished_total{state}                 jobs this worker finished (won terminal writes)
    routeyard_attempts_total{provider,endpoint,status}   provider calls answered or failed
    routeyard_cost_usd_total                             cost recorded by this process (batch jobs)
    routeyard_tokens_total{kind}                         input / output tokens of answered calls
    routeyard_unpriced_calls_total                       calls whose price is unknown (never counted as $0)
    routeyard_dispatch_total{event}                      claimed, finished, deferred (rate limits, circuits),
                                                         held (budgets), dropped, errors
    routeyard_jobs_in_flight                             jobs this worker is running
    routeyard_queue_jobs{priority,where}                 waiting in lanes / scheduled (leased or deferred)
    routeyard_circuit_open{endpoint}                     1 for each endpoint whose circuit is open
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.events import EventSink, FanOut, JobFinished
from shared.queue import JobQueue
from shared.redis_keys import PRIORITY_LEVELS
from worker.stats import EndpointStatsBook

log = logging.getLogger("routeyard.metrics")
PRIORITY_NAMES = {0: "high", 1: "normal", 2: "low"}


class MetricsSink:
    """EventSink: counts finished jobs by state."""

    def __init__(self) -> None:
        self.finished: Counter[str] = Counter()
        self.batches_done = 0

    def job_finished(self, event: JobFinished) -> None:
        self.finished[event.state] += 1

    def batches_completed(self, batch_ids: list[str]) -> None:
        self.batches_done += len(batch_ids)


class MeteredStats(EndpointStatsBook):
    """The runner's endpoint statistics, also counting calls per endpoint and outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[tuple[str, str]] = Counter()

    def observe(self, slug: str, latency_ms: int, output_tokens: int) -> None:
        super().observe(slug, latency_ms, output_tokens)
        self.calls[(slug, "succeeded")] += 1

    def observe_failure(self, slug: str) -> None:
        super().observe_failure(slug)
        self.calls[(slug, "failed")] += 1


class QueueMetrics(Collector):
    """Queue depth per priority and open circuits, refreshed by `refresh()` (Redis reads), served from memory."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.depth: dict[int, dict[str, int]] = {}
        self.open_circuits: frozenset[str] = frozenset()

    async def refresh(self) -> None:
        self.depth = await self.queue.depth()
        t = await self.queue.redis.time()
        now_ms = int(t[0]) * 1000 + int(t[1]) // 1000
        members = await self.queue.redis.zrangebyscore(f"{self.queue.keys.prefix}cb:open", now_ms, "+inf")
        self.open_circuits = frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("routeyard_queue_jobs", "Jobs in the dispatch queue", labels=["priority", "where"])
        for p in range(PRIORITY_LEVELS):
            d = self.depth.get(p, {})
            for where in ("waiting", "scheduled"):
                depth.add_metric([PRIORITY_NAMES.get(p, str(p)), where], d.get(where, 0))
        yield depth
        circuits = GaugeMetricFamily(
            "routeyard_circuit_open", "1 when the endpoint's circuit is open", labels=["endpoint"]
        )
        for slug in sorted(self.open_circuits):
            circuits.add_metric([slug], 1)
        yield circuits


class WorkerMetrics(Collector):
    """A worker's counters, read at scrape time. `install` wires it into a runtime before its dispatcher
    starts; `serve(port)` exposes it over HTTP."""

    def __init__(self, runtime: Any, store: Any, *, refresh_s: float = 5.0) -> None:
        self.runtime = runtime
        self.store = store
        self.dispatcher: Any = None
        self.sink = MetricsSink()
        self.stats = MeteredStats()
        self.queue_metrics = QueueMetrics(runtime.queue)
        self.refresh_s = refresh_s
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.registry.register(self.queue_metrics)
        self._task: asyncio.Task[None] | None = None
        self._server: Any = None

    @classmethod
    def install(cls, runtime: Any, store: Any) -> WorkerMetrics:
        m = cls(runtime, store)
        runtime.stats = m.stats
        events: EventSink = runtime.events
        runtime.events = FanOut(events, m.sink)
        return m

    def start(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self._task = asyncio.create_task(self._refresh_loop(), name="routeyard-metrics")

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.queue_metrics.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("metrics: could not read queue depth and circuits", exc_info=True)
            await asyncio.sleep(self.refresh_s)

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:  # noqa: S104 - scraped from other hosts
        """Serve `/metrics` on `port` (0: any free port) from a thread; returns the port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        return int(server.server_port)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def collect(self) -> Iterator[Metric]:
        finished = CounterMetricFamily("routeyard_jobs_finished", "Jobs finished by this worker", labels=["state"])
        for state, n in sorted(self.sink.finished.items()):
            finished.add_metric([state], n)
        yield finished
        calls = CounterMetricFamily(
            "routeyard_attempts", "Provider calls by endpoint and outcome", labels=["provider", "endpoint", "status"]
        )
        for (slug, status), n in sorted(self.stats.calls.items()):
            calls.add_metric([slug.split("/", 1)[0], slug, status], n)
        yield calls
        recorded = self.store.writer.recorded
        yield CounterMetricFamily(
            "routeyard_cost_usd", "Cost of calls recorded by this process (USD)", value=float(recorded.cost)
        )
        tokens = CounterMetricFamily("routeyard_tokens", "Tokens of answered calls", labels=["kind"])
        tokens.add_metric(["input"], recorded.input_tokens)
        tokens.add_metric(["output"], recorded.output_tokens)
        yield tokens
        yield CounterMetricFamily(
            "routeyard_unpriced_calls", "Calls whose price is unknown", value=recorded.unpriced_calls
        )
        d = self.dispatcher
        if d is not None:
            dispatch = CounterMetricFamily("routeyard_dispatch", "Dispatcher events", labels=["event"])
            for event in ("claimed", "finished", "deferred", "held", "dropped", "errors"):
                dispatch.add_metric([event], getattr(d.stats, event))
            yield dispatch
            yield GaugeMetricFamily("routeyard_jobs_in_flight", "Jobs this worker is running", value=len(d.in_flight))


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition and its content type (for an HTTP endpoint)."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


__all__ = ["MeteredStats", "MetricsSink", "QueueMetrics", "WorkerMetrics", "exposition"]
