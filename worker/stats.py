"""Live per-endpoint statistics for `sort: latency | throughput`: exponentially weighted moving averages
of recorded calls. Kept per worker process, seeded from nothing; shared statistics plug in here."""

from __future__ import annotations

from dataclasses import dataclass

from worker.router import EndpointStats

ALPHA = 0.2
"""Weight of the newest observation: recent behaviour matters, one outlier does not swing the order."""


@dataclass(slots=True)
class _Ewma:
    latency_ms: float | None = None
    throughput_tps: float | None = None
    failures: int = 0


class EndpointStatsBook:
    def __init__(self) -> None:
        self._by_slug: dict[str, _Ewma] = {}

    def observe(self, slug: str, latency_ms: int, output_tokens: int) -> None:
        e = self._by_slug.setdefault(slug, _Ewma())
        e.latency_ms = latency_ms if e.latency_ms is None else (1 - ALPHA) * e.latency_ms + ALPHA * latency_ms
        if latency_ms > 0:
            tps = output_tokens / (latency_ms / 1000)
            e.throughput_tps = tps if e.throughput_tps is None else (1 - ALPHA) * e.throughput_tps + ALPHA * tps

    def observe_failure(self, slug: str) -> None:
        self._by_slug.setdefault(slug, _Ewma()).failures += 1

    def snapshot(self) -> dict[str, EndpointStats]:
        return {s: EndpointStats(e.latency_ms, e.throughput_tps) for s, e in self._by_slug.items()}
