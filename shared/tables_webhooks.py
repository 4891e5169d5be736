"""Webhook tables: who wants to hear of a batch (subscriptions), what was sent (deliveries), and every try
(attempts — the delivery log that `routeyard webhooks` and the admin API read).

A subscription belongs to one submission (a batch, or a single job's batch of one) and one URL. Its signing
secret is stored encrypted under the master key (`shared.crypto.SecretBox`) and shown to the submitter once.
A delivery is one event for one subscription; its `message_id` is the Standard Webhooks `webhook-id`, the same
on every retry and replay so receivers can deduplicate.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.timeutil import UTCDateTime


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next try
    SUCCEEDED = "succeeded"  # the receiver answered 2xx
    FAILED = "failed"  # every try of the schedule failed, or the target was refused
    DISABLED = "disabled"  # the receiver answered 410 Gone, or the subscription was disabled before this try


def _utc(nullable: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable)


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (UniqueConstraint("batch_id", "url", name="uq_webhook_subscriptions_batch_url"),)

    id: str = Field(primary_key=True, max_length=40)
    created_at: datetime = Field(sa_column=_utc())
    batch_id: str = Field(max_length=40, index=True)
    """The submission it belongs to (no foreign key: it is written before the batch row, so no event of a
    fast batch can slip past it)."""
    api_key_id: str | None = Field(default=None, max_length=40, index=True)
    url: str = Field(max_length=2048)
    events: str = Field(max_length=256)
    """Comma-separated event types this subscription receives (see `shared.webhooks.EVENTS`)."""
    primary: bool = True
    """False for a subscription made for a line's own `webhook_url` (it shares the batch's secret)."""
    secret_enc: str = Field(sa_column=Column(Text, nullable=False))
    """`whsec_…` encrypted with the master key; never stored or logged in plaintext."""
    disabled_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    disabled_reason: str | None = Field(default=None, max_length=256)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_batch_event", "batch_id", "event_type"),
    )

    id: str = Field(primary_key=True, max_length=40)
    subscription_id: str = Field(max_length=40, foreign_key="webhook_subscriptions.id", index=True)
    message_id: str = Field(max_length=80, index=True)
    """Standard Webhooks `webhook-id`: stable across retries and replays."""
    dedupe_key: str | None = Field(default=None, max_length=128, unique=True)
    """`subscription:message` for an original delivery, so an event announced twice (at-least-once) is
    delivered once; NULL for replays."""
    event_type: str = Field(max_length=32)
    batch_id: str | None = Field(default=None, max_length=40)
    job_id: str | None = Field(default=None, max_length=40)
    url: str = Field(max_length=2048)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=DeliveryStatus.PENDING.value, max_length=16)
    attempts: int = 0
    last_status_code: int | None = None
    created_at: datetime = Field(sa_column=_utc())
    updated_at: datetime = Field(sa_column=_utc())
    next_attempt_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    replay_of: str | None = Field(default=None, max_length=40)


class WebhookAttempt(SQLModel, table=True):
    """One HTTP try of a delivery: the log an operator reads when a receiver says it heard nothing."""

    __tablename__ = "webhook_attempts"

    id: str = Field(primary_key=True, max_length=40)
    delivery_id: str = Field(max_length=40, foreign_key="webhook_deliveries.id", index=True)
    attempt: int
    """1-based try number within the delivery."""
    started_at: datetime = Field(sa_column=_utc())
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    outcome: str = Field(max_length=16)
    """succeeded | retry | failed | disabled | refused"""
