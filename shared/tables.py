"""The SQL store's tables: the record of every batch, job and provider call.

`attempts` is the ledger: one row per provider call, written *before* the call is made (status `started`)
and completed after it. A call cut off by a dying worker stays in the ledger as `abandoned`, charged its
worst-case reservation, because the provider may well have served and billed it. So every call a provider
could bill appears exactly once, keyed by its attempt id.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import Column, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.money import Money
from shared.timeutil import UTCDateTime


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BUDGET_EXHAUSTED = "budget_exhausted"
    """Held: its router key's limit or its batch's budget cannot cover it now. Not failed, not spent; it
    resumes when the limit resets or is raised."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)


class AttemptStatus(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"


class BatchState(StrEnum):
    SUBMITTING = "submitting"  # lines are still being stored; not complete even if every stored job is
    OPEN = "open"  # accepted; jobs are queued or running
    COMPLETED = "completed"  # every job reached a terminal state
    CANCELLED = "cancelled"


def _utc(nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable, index=index)


def _money(nullable: bool = True, default: int | None = None) -> Column[Decimal]:
    return Column(Money(), nullable=nullable, server_default=None if default is None else str(default))


class Batch(SQLModel, table=True):
    __tablename__ = "batches"

    id: str = Field(primary_key=True, max_length=40)
    created_at: datetime = Field(sa_column=_utc())
    updated_at: datetime = Field(sa_column=_utc())
    finished_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    state: str = Field(default=BatchState.OPEN.value, max_length=16, index=True)
    api_key_id: str | None = Field(default=None, max_length=40, index=True)
    source: str | None = Field(default=None, max_length=512)
    default_class: str | None = Field(default=None, max_length=64)
    priority: int = 1
    max_total_cost: Decimal | None = Field(default=None, sa_column=_money())
    metadata_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    webhook_url: str | None = Field(default=None, max_length=2048)
    # aggregates kept up to date in the same transaction as each job's terminal write, so polling a
    # 100k-job batch reads one row instead of counting jobs
    n_total: int = 0
    n_rejected: int = 0
    n_succeeded: int = 0
    n_failed: int = 0
    n_cancelled: int = 0
    cost_total: Decimal = Field(default=Decimal(0), sa_column=_money(nullable=False, default=0))
    unpriced_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("batch_id", "custom_id", name="uq_jobs_batch_custom_id"),
        Index("ix_jobs_batch_state", "batch_id", "state"),
        Index("ix_jobs_state_updated", "state", "updated_at"),
        Index("ix_jobs_state_finished", "state", "finished_at"),  # dead letters, re-queue and purge by age
    )

    id: str = Field(primary_key=True, max_length=40)
    batch_id: str | None = Field(default=None, max_length=40, foreign_key="batches.id")
    custom_id: str | None = Field(default=None, max_length=256)
    line_no: int | None = None
    api_key_id: str | None = Field(default=None, max_length=40, index=True)
    # the submitting key's team, project and environment at submission: usage reports attribute jobs and
    # spend as they were when made, so moving a key to another team later does not move its history
    team: str | None = Field(default=None, max_length=64)
    project: str | None = Field(default=None, max_length=64)
    environment: str | None = Field(default=None, max_length=16)
    state: str = Field(default=JobState.QUEUED.value, max_length=16)
    priority: int = 1
    class_name: str = Field(max_length=64)
    spec: str = Field(sa_column=Column(Text, nullable=False))
    """The validated job spec as JSON: what to send, routing preferences, budget."""
    created_at: datetime = Field(sa_column=_utc())
    updated_at: datetime = Field(sa_column=_utc())
    started_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    not_before: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    deadline_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    runs: int = 0
    """How many times a worker claimed the job (a re-run after a crash counts)."""
    attempts: int = 0
    """Provider calls made for the job, across runs (since its last re-queue: the ledger keeps them all)."""
    requeues: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0, server_default="0"))
    """Times an operator re-queued the job (`routeyard requeue`). Each re-queue starts a new round with a
    fresh allowance of calls, runs and time; see `shared.requeue`."""
    worker_id: str | None = Field(default=None, max_length=64)
    endpoint: str | None = Field(default=None, max_length=160)
    model: str | None = Field(default=None, max_length=128)
    provider: str | None = Field(default=None, max_length=64)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: Decimal | None = Field(default=None, sa_column=_money())
    """Sum of the known costs of every call made for the job; see `unpriced_calls`."""
    unpriced_calls: int = 0
    error_class: str | None = Field(default=None, max_length=32)
    error_message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    result: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The answer as an OpenAI chat.completion object (JSON)."""


class BudgetHold(SQLModel, table=True):
    """A budget scope that holds jobs as `budget_exhausted`, with the limit and period it had then. The sweeper
    resumes the scope's jobs once either changes (a raise, a reset, a removed limit)."""

    __tablename__ = "budget_holds"

    scope: str = Field(primary_key=True, max_length=80)
    """`batch:<id>` or `key:<id>`."""
    limit: Decimal | None = Field(default=None, sa_column=_money())
    period: str = Field(default="", max_length=40)
    held_at: datetime = Field(sa_column=_utc())


class Attempt(SQLModel, table=True):
    __tablename__ = "attempts"
    __table_args__ = (
        Index("ix_attempts_job_status", "job_id", "status"),
        Index("ix_attempts_key_started", "api_key_id", "started_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    job_id: str = Field(max_length=40, foreign_key="jobs.id")
    batch_id: str | None = Field(default=None, max_length=40, index=True)
    seq: int
    """1-based position among the job's calls."""
    run: int
    worker_id: str = Field(max_length=64)
    endpoint: str = Field(max_length=160)
    provider: str = Field(max_length=64, index=True)
    model: str = Field(max_length=128)
    key_ref: str | None = Field(default=None, max_length=80)
    """Which provider key was used — an id, never the secret."""
    api_key_id: str | None = Field(default=None, max_length=40)
    """The router key whose job made the call (copied from the job, so spend per key is one index scan)."""
    billed_to: str = Field(default="credits", max_length=16)
    """`credits` (a pooled key: cost counts against the router key's limit) or `byok` (the team's own provider
    key: the provider bills the team; routeyard charges `fee` as credits)."""
    # the router key's team, project and environment when the call was made (see `Job.team`)
    team: str | None = Field(default=None, max_length=64)
    project: str | None = Field(default=None, max_length=64)
    environment: str | None = Field(default=None, max_length=16)
    fee: Decimal | None = Field(default=None, sa_column=_money())
    status: str = Field(default=AttemptStatus.STARTED.value, max_length=16)
    http_status: int | None = None
    error_class: str | None = Field(default=None, max_length=32)
    error_message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    request_id: str | None = Field(default=None, max_length=128)
    started_at: datetime = Field(sa_column=_utc(index=True))
    finished_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    latency_ms: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reserved_cost: Decimal | None = Field(default=None, sa_column=_money())
    """Worst case (estimated input + max output tokens at list price), reserved before the call."""
    cost: Decimal | None = Field(default=None, sa_column=_money())
    """Real cost: `None` while running or when the price is unknown; 0 for a call that failed with an error
    (providers do not bill errors or calls they never answered)."""
    cost_estimated: bool = False
    """True when `cost` is the reservation, not a measurement (an abandoned call)."""
