"""Completion events: the seam between the worker's terminal writes and whoever wants to hear of them
(webhooks, metrics). Events are emitted only for writes that won — a job finishes once, so it is announced
once. Sinks must not block: they schedule their own work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class JobFinished:
    job_id: str
    batch_id: str | None
    state: str
    """succeeded | failed | cancelled"""


class EventSink(Protocol):
    def job_finished(self, event: JobFinished) -> None: ...

    def batches_completed(self, batch_ids: list[str]) -> None: ...


class NullSink:
    def job_finished(self, event: JobFinished) -> None:
        return None

    def batches_completed(self, batch_ids: list[str]) -> None:
        return None


class FanOut:
    """Several sinks behind one; a failing sink does not stop the others."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = list(sinks)

    def job_finished(self, event: JobFinished) -> None:
        for s in self.sinks:
            try:
                s.job_finished(event)
            except Exception:  # noqa: S112 - one broken listener must not break the worker
                continue

    def batches_completed(self, batch_ids: list[str]) -> None:
        for s in self.sinks:
            try:
                s.batches_completed(batch_ids)
            except Exception:  # noqa: S112
                continue
