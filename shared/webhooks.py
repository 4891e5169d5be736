"""Webhooks as producers and workers agree on them: event types, subscriptions and their secrets, Standard
Webhooks signatures, and the arq jobs that carry deliveries (`worker.webhooks` runs them).

    submission ──► subscribe(): one subscription per (batch, URL), secret `whsec_…` shown once, stored
                   encrypted (SecretBox)
    worker     ──► a terminal write that won ──► WebhookSink (buffers, drops batches without subscriptions)
               ──► arq `webhook_fanout` (one per batch per flush) ──► delivery rows ──► arq `webhook_deliver`
                   (one per try, on `{prefix}arq:queue`, deferred on the configured schedule)

Signatures follow Standard Webhooks: headers `webhook-id` (stable across retries), `webhook-timestamp` (unix
seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, computed by the
`standardwebhooks` reference library.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert

from shared.crypto import SecretBox
from shared.errors import InputError
from shared.ids import new_id
from shared.store.writer import Deltas, Operation
from shared.tables import BatchState
from shared.tables_webhooks import WebhookSubscription
from shared.timeutil import utcnow

JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
BATCH_COMPLETED = "batch.completed"
BATCH_FAILED = "batch.failed"
BATCH_CANCELLED = "batch.cancelled"
JOB_EVENTS = (JOB_SUCCEEDED, JOB_FAILED)
BATCH_EVENTS = (BATCH_COMPLETED, BATCH_FAILED, BATCH_CANCELLED)
EVENTS = JOB_EVENTS + BATCH_EVENTS

FANOUT_FUNCTION = "webhook_fanout"
DELIVER_FUNCTION = "webhook_deliver"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret

subscriptions = WebhookSubscription.__table__  # type: ignore[attr-defined]


def arq_queue_name(prefix: str) -> str:
    """arq's own queue, shared with the sweeper: webhook jobs are housekeeping, not inference."""
    return f"{prefix}arq:queue"


def parse_events(events: Iterable[str] | str | None, default: Iterable[str]) -> list[str]:
    """Validated event types (comma-separated string or list); `default` when none are given."""
    if isinstance(events, str):
        events = [e for e in (x.strip() for x in events.split(",")) if e]
    chosen = list(events) if events else list(default)
    unknown = sorted(set(chosen) - set(EVENTS))
    if unknown:
        raise InputError(f"unknown webhook event(s) {unknown}; known: {', '.join(EVENTS)}", code="invalid_request")
    return [e for e in EVENTS if e in chosen]


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for one try of a message."""
    from standardwebhooks.webhooks import Webhook

    signature = Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "routeyard-webhooks/1",
    }


def envelope(event_type: str, data: dict[str, Any], at: datetime | None = None) -> str:
    """The body every receiver gets: `{"type", "timestamp", "data"}` (the Standard Webhooks payload shape)."""
    ts = (at or utcnow()).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": ts, "data": data}, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription just made. `secret` is the one-time reveal: return it to the submitter, never log it."""

    id: str
    batch_id: str
    url: str
    events: list[str]
    secret: str

    def reveal(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "events": self.events, "secret": self.secret}


def subscribe(
    box: SecretBox, batch_id: str, url: str, events: list[str], api_key_id: str | None
) -> tuple[Subscription, Operation[None]]:
    """A new subscription and the write that stores it (secret encrypted). Run the write *before* the batch's
    jobs are enqueued, so no event can find the batch without its subscription."""
    sub = Subscription(new_id("whs"), batch_id, url, events, new_secret())
    row = {
        "id": sub.id,
        "created_at": utcnow(),
        "batch_id": batch_id,
        "api_key_id": api_key_id,
        "url": url,
        "events": ",".join(events),
        "primary": True,
        "secret_enc": box.encrypt(sub.secret),
    }

    def op(conn: Connection, deltas: Deltas) -> None:
        conn.execute(insert(subscriptions).values(**row))

    return sub, op


def batch_event(row: dict[str, Any]) -> str:
    """The event a finished batch announces: cancelled; failed when no job succeeded; else completed."""
    if row["state"] == BatchState.CANCELLED.value:
        return BATCH_CANCELLED
    if row["n_succeeded"] == 0:
        return BATCH_FAILED
    return BATCH_COMPLETED


def batch_message_id(batch_id: str) -> str:
    return f"msg_{batch_id}"


def job_message_id(job_id: str) -> str:
    return f"msg_{job_id}"


async def announce(redis: Any, prefix: str, batch_id: str, *, batch_done: bool = True) -> None:
    """Ask the workers to fan a batch's terminal event out to its subscribers (the gateway's cancel path:
    its writes do not pass through a worker's event sink)."""
    await redis.enqueue_job(FANOUT_FUNCTION, batch_id, [], batch_done, _queue_name=arq_queue_name(prefix))
