"""Request and response bodies, as published in the OpenAPI spec (`/openapi.json`).

The OpenAI objects mirror the official SDK's types (`openai.types.Batch`, `FileObject`, …) field for field,
so the SDK parses them unchanged; routeyard's extras ride in `metadata` and in fields prefixed `routeyard_`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.models import JobSpec, ProviderPreferences, check_metadata
from shared.money import MAX_USD

OpenAIStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]


# ---------------------------------------------------------------------------------------------- OpenAI
class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchErrorItem(BaseModel):
    code: str | None = None
    line: int | None = None
    message: str | None = None
    param: str | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchErrorItem]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class WebhookReveal(BaseModel):
    """A new webhook subscription. `secret` is shown this once: store it to verify deliveries."""

    id: str
    url: str
    events: list[str]
    secret: str


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: OpenAIStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts | None = None
    metadata: dict[str, str] | None = None
    model: str | None = None
    usage: BatchUsage | None = None
    routeyard_cost_total: str | None = Field(default=None, description="Cost so far in dollars (a decimal string).")
    routeyard_webhook: WebhookReveal | None = Field(
        default=None, description="Only in the response that created the batch with a webhook."
    )


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class OutputExpiresAfter(BaseModel):
    anchor: Literal["created_at"] = "created_at"
    seconds: int = Field(ge=3600, le=2_592_000)


class BatchCreate(BaseModel):
    """`POST /v1/batches`. routeyard options ride in `metadata`: `routeyard_class`, `routeyard_priority`
    (high|normal|low), `routeyard_max_total_cost` (dollars), `routeyard_models` (comma-separated fallbacks
    for lines that name no model), `routeyard_provider` (an OpenRouter `provider` object as JSON),
    `routeyard_webhook_url`, `routeyard_webhook_events` (comma-separated), `routeyard_strict` (true: one bad
    line rejects the whole file)."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: str = Field(max_length=64)
    completion_window: str = Field(max_length=16)
    metadata: dict[str, str] | None = None
    output_expires_after: OutputExpiresAfter | None = None

    _metadata = field_validator("metadata")(check_metadata)


# ---------------------------------------------------------------------------------------------- native
class JobSubmit(JobSpec):
    """One job (a routeyard or OpenAI-style chat body with OpenRouter routing fields). With `webhook_url`, its
    `job.succeeded`/`job.failed` event is delivered there, signed with the secret returned once."""

    webhook_events: list[str] | None = None


class BatchSubmit(BaseModel):
    """A batch as JSON. Each item of `jobs` is one input line (routeyard or OpenAI batch-line shape); an
    invalid item is rejected with its 1-based position as its line number and the rest run."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    jobs: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)
    class_: str | None = Field(default=None, alias="class", max_length=64)
    priority: Literal["high", "normal", "low"] | None = None
    max_total_cost: Decimal | None = Field(default=None, gt=0, le=MAX_USD)
    models: list[str] | None = Field(default=None, min_length=1, max_length=32)
    provider: ProviderPreferences | None = None
    metadata: dict[str, str] | None = None
    webhook_url: str | None = Field(default=None, max_length=2048)
    webhook_events: list[str] | None = None
    strict: bool = False

    _metadata = field_validator("metadata")(check_metadata)


class LineErrorView(BaseModel):
    line: int
    custom_id: str | None = None
    code: str
    message: str


class SubmitResult(BaseModel):
    batch_id: str | None
    accepted: int
    rejected: int
    rejected_all: bool = False
    errors: list[LineErrorView] = Field(description="The first rejected lines (all of them: `GET …/errors`).")
    webhook: WebhookReveal | None = None
    batch: dict[str, Any] | None = None


class JobSubmitted(BaseModel):
    job_id: str
    batch_id: str
    state: str
    webhook: WebhookReveal | None = None


class BatchPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delivery_id: str | None = Field(default=None, max_length=40)
    message_id: str | None = Field(default=None, max_length=80)
    batch_id: str | None = Field(default=None, max_length=40)
    only_failed: bool = False
