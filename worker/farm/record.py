"""The farm's own ledger of what it was asked and what it answered.

Tests use it as ground truth for accounting: routeyard's cost records must match what the farm says it
served. Hence the invariants: only `served` (2xx) requests carry tokens (they are the billed ones), a hung
request is recorded once, when the hang begins, and API keys are stored only as a short sha256 prefix.

Aggregates per provider are always kept (a few integer additions per request); the full per-request log
can be switched off for long benchmarks.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal

Outcome = Literal["served", "error", "hung"]


@lru_cache(maxsize=1024)
def key_hash(api_key: str | None) -> str | None:
    """A short, stable fingerprint of an API key: enough to tell keys apart, useless to an attacker."""
    if api_key is None:
        return None
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    provider: str
    wire: str
    model: str | None
    api_key_hash: str | None
    job_id: str | None
    attempt_id: str | None
    status_code: int | None
    """None for a hung request: the farm never chose a status while the client waited."""
    outcome: Outcome
    prompt_tokens: int
    """Billed tokens: zero unless `outcome == "served"`."""
    completion_tokens: int
    t_received: float


@dataclass(slots=True)
class ProviderStats:
    requests: int = 0
    served: int = 0
    hung: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    """Sums over served requests only."""
    completion_tokens: int = 0

    @property
    def errors(self) -> dict[int, int]:
        """Counts of non-2xx answers by status code."""
        return {status: n for status, n in self.by_status.items() if not 200 <= status < 300}

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "served": self.served,
            "hung": self.hung,
            "errors": {str(status): n for status, n in sorted(self.errors.items())},
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class FarmRecord:
    """Per-provider aggregates plus (optionally) every request, in arrival-of-answer order."""

    def __init__(self, record_requests: bool = True) -> None:
        self.record_requests = record_requests
        self.requests: list[RequestRecord] = []
        self.stats: dict[str, ProviderStats] = {}

    def add(self, entry: RequestRecord) -> None:
        stats = self.stats.get(entry.provider)
        if stats is None:
            stats = self.stats[entry.provider] = ProviderStats()
        stats.requests += 1
        if entry.outcome == "hung":
            stats.hung += 1
        elif entry.status_code is not None:
            stats.by_status[entry.status_code] = stats.by_status.get(entry.status_code, 0) + 1
            if entry.outcome == "served":
                stats.served += 1
                stats.prompt_tokens += entry.prompt_tokens
                stats.completion_tokens += entry.completion_tokens
        if self.record_requests:
            self.requests.append(entry)

    def find(
        self, *, job_id: str | None = None, provider: str | None = None, attempt_id: str | None = None
    ) -> list[RequestRecord]:
        """Logged requests matching every filter given."""
        return [
            r
            for r in self.requests
            if (job_id is None or r.job_id == job_id)
            and (provider is None or r.provider == provider)
            and (attempt_id is None or r.attempt_id == attempt_id)
        ]

    def reset(self) -> None:
        self.requests.clear()
        self.stats.clear()

    def stats_json(self) -> dict[str, dict[str, Any]]:
        return {name: stats.as_json() for name, stats in sorted(self.stats.items())}

    @staticmethod
    def entry_json(entry: RequestRecord) -> dict[str, Any]:
        return asdict(entry)
