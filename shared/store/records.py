"""Plain records passed between the worker and the store (no ORM objects on the hot path)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(slots=True, frozen=True)
class ClaimedJob:
    id: str
    batch_id: str | None
    spec_json: str
    runs: int
    """Including this claim."""
    attempts: int
    """Provider calls already made for the job by earlier runs."""
    priority: int
    class_name: str
    api_key_id: str | None
    created_at: datetime
    deadline_at: datetime | None
    cost: Decimal | None = None
    """Cost of the calls made for the job so far (earlier runs)."""
    started_at: datetime | None = None
    """When a worker first claimed the job."""


@dataclass(slots=True, frozen=True)
class AttemptStart:
    id: str
    job_id: str
    batch_id: str | None
    seq: int
    run: int
    worker_id: str
    endpoint: str
    provider: str
    model: str
    key_ref: str | None
    reserved_cost: Decimal | None
    started_at: datetime
    api_key_id: str | None = None
    billed_to: str = "credits"
    team: str | None = None
    project: str | None = None
    environment: str | None = None


@dataclass(slots=True, frozen=True)
class AttemptEnd:
    id: str
    job_id: str
    batch_id: str | None
    succeeded: bool
    finished_at: datetime
    latency_ms: int
    http_status: int | None = None
    error_class: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    cost: Decimal | None = None
    """Real cost; `None` = unknown price (only meaningful for a served call)."""
    fee: Decimal | None = None
    """Platform fee in credits (BYOK calls); 0 for pooled calls."""


@dataclass(slots=True, frozen=True)
class JobSuccess:
    job_id: str
    batch_id: str | None
    result_json: str
    endpoint: str
    model: str
    provider: str
    input_tokens: int
    output_tokens: int


@dataclass(slots=True, frozen=True)
class JobFailure:
    job_id: str
    batch_id: str | None
    error_class: str
    error_message: str
