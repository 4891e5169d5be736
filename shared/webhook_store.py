"""Reads and writes of the webhook tables, as `fn(conn)` queries and `op(conn, deltas)` operations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shared.ids import new_id
from shared.store.writer import Deltas, Operation
from shared.tables import Batch, BatchState
from shared.tables_webhooks import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookSubscription
from shared.timeutil import utcnow
from shared.webhooks import JOB_FAILED, JOB_SUCCEEDED, batch_event, job_message_id

subscriptions = WebhookSubscription.__table__  # type: ignore[attr-defined]
deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
attempts = WebhookAttempt.__table__  # type: ignore[attr-defined]
batches = Batch.__table__  # type: ignore[attr-defined]

# ---------------------------------------------------------------------------------------------- subscriptions


def subscribed_batches(batch_ids: Sequence[str]) -> Callable[[Connection], set[str]]:
    """Which of these batches have a (primary) subscription: the event sink's filter."""

    def q(conn: Connection) -> set[str]:
        rows = conn.execute(
            select(subscriptions.c.batch_id).where(
                subscriptions.c.batch_id.in_(list(batch_ids)), subscriptions.c.primary.is_(True)
            )
        )
        return {r[0] for r in rows}

    return q


def subscriptions_of(batch_id: str) -> Callable[[Connection], list[dict[str, Any]]]:
    def q(conn: Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(subscriptions).where(subscriptions.c.batch_id == batch_id).order_by(subscriptions.c.id)
        ).mappings()
        return [dict(r) for r in rows]

    return q


def line_subscription(primary: dict[str, Any], url: str) -> Operation[str]:
    """The subscription for a line's own webhook URL in `primary`'s batch (made on first use; it shares the
    primary's encrypted secret, so the submitter's one secret verifies every delivery of the batch)."""

    def op(conn: Connection, deltas: Deltas) -> str:
        where = and_(subscriptions.c.batch_id == primary["batch_id"], subscriptions.c.url == url)
        found = conn.execute(select(subscriptions.c.id).where(where)).first()
        if found is not None:
            return str(found[0])
        sid = new_id("whs")
        values = {
            "id": sid,
            "created_at": utcnow(),
            "batch_id": primary["batch_id"],
            "api_key_id": primary["api_key_id"],
            "url": url,
            "events": "job.succeeded,job.failed",
            "primary": False,
            "secret_enc": primary["secret_enc"],
        }
        stmt = _insert(conn, subscriptions).values(**values).on_conflict_do_nothing()
        conn.execute(stmt)
        again = conn.execute(select(subscriptions.c.id).where(where)).first()
        assert again is not None
        return str(again[0])

    return op


def jobs_with_own_webhook(job_ids: Sequence[str]) -> Callable[[Connection], list[str]]:
    """Which of these jobs carry their own `webhook_url` (found in the stored spec, without loading results)."""
    from shared.tables import Job

    jobs = Job.__table__  # type: ignore[attr-defined]

    def q(conn: Connection) -> list[str]:
        rows = conn.execute(select(jobs.c.id).where(jobs.c.id.in_(list(job_ids)), jobs.c.spec.like('%"webhook_url":%')))
        return [r[0] for r in rows]

    return q


def _insert(conn: Connection, table: Any) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


# ---------------------------------------------------------------------------------------------- deliveries


def new_delivery(
    subscription_id: str,
    url: str,
    message_id: str,
    event_type: str,
    payload: str,
    *,
    batch_id: str | None,
    job_id: str | None,
    now: datetime,
    replay_of: str | None = None,
) -> dict[str, Any]:
    return {
        "id": new_id("whd"),
        "subscription_id": subscription_id,
        "message_id": message_id,
        "dedupe_key": None if replay_of else f"{subscription_id}:{message_id}",
        "event_type": event_type,
        "batch_id": batch_id,
        "job_id": job_id,
        "url": url,
        "payload": payload,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "next_attempt_at": now,
        "replay_of": replay_of,
    }


def insert_deliveries(rows: list[dict[str, Any]]) -> Operation[list[str]]:
    """Insert deliveries; an event already delivered to a subscription (same dedupe key) is skipped.
    Returns the ids actually inserted."""

    def op(conn: Connection, deltas: Deltas) -> list[str]:
        if not rows:
            return []
        stmt = (
            _insert(conn, deliveries)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(deliveries.c.id)
        )
        return [r[0] for r in conn.execute(stmt)]

    return op


def delivery_for_attempt(delivery_id: str) -> Callable[[Connection], dict[str, Any] | None]:
    """A delivery with what a try needs from its subscription (URL, encrypted secret, disabled?)."""

    def q(conn: Connection) -> dict[str, Any] | None:
        row = (
            conn.execute(
                select(
                    deliveries,
                    subscriptions.c.secret_enc,
                    subscriptions.c.disabled_at.label("subscription_disabled_at"),
                )
                .select_from(deliveries.join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id))
                .where(deliveries.c.id == delivery_id)
            )
            .mappings()
            .first()
        )
        return None if row is None else dict(row)

    return q


def record_attempt(
    delivery: dict[str, Any],
    *,
    attempt: int,
    started_at: datetime,
    outcome: str,
    status_code: int | None,
    latency_ms: int | None,
    error: str | None,
    next_attempt_at: datetime | None,
) -> Operation[bool]:
    """Log one try and move the delivery on. The delivery only moves if no other run got there first
    (its try count is what this try saw); the try itself is logged either way — it was made."""
    status = {
        "succeeded": DeliveryStatus.SUCCEEDED,
        "retry": DeliveryStatus.PENDING,
        "failed": DeliveryStatus.FAILED,
        "refused": DeliveryStatus.FAILED,
        "disabled": DeliveryStatus.DISABLED,
    }[outcome].value

    def op(conn: Connection, deltas: Deltas) -> bool:
        now = utcnow()
        conn.execute(
            insert(attempts).values(
                id=new_id("wha"),
                delivery_id=delivery["id"],
                attempt=attempt,
                started_at=started_at,
                status_code=status_code,
                latency_ms=latency_ms,
                error=error,
                outcome=outcome,
            )
        )
        moved = conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery["id"], deliveries.c.attempts == attempt - 1)
            .values(
                attempts=attempt,
                status=status,
                last_status_code=status_code,
                updated_at=now,
                next_attempt_at=next_attempt_at,
            )
        ).rowcount
        if outcome == "disabled":
            conn.execute(
                update(subscriptions)
                .where(subscriptions.c.id == delivery["subscription_id"], subscriptions.c.disabled_at.is_(None))
                .values(disabled_at=now, disabled_reason=f"receiver answered {status_code} Gone")
            )
        return bool(moved)

    return op


def skip_disabled(delivery_id: str) -> Operation[None]:
    """The subscription was disabled (a 410 earlier): this delivery is not tried."""

    def op(conn: Connection, deltas: Deltas) -> None:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.status == DeliveryStatus.PENDING.value)
            .values(status=DeliveryStatus.DISABLED.value, updated_at=utcnow(), next_attempt_at=None)
        )

    return op


def list_deliveries(
    *,
    batch_id: str | None = None,
    status: str | None = None,
    message_id: str | None = None,
    delivery_id: str | None = None,
    event_type: str | None = None,
    limit: int = 100,
) -> Callable[[Connection], list[dict[str, Any]]]:
    def q(conn: Connection) -> list[dict[str, Any]]:
        stmt = select(deliveries)
        for col, value in (
            ("batch_id", batch_id),
            ("status", status),
            ("message_id", message_id),
            ("id", delivery_id),
            ("event_type", event_type),
        ):
            if value is not None:
                stmt = stmt.where(deliveries.c[col] == value)
        rows = conn.execute(stmt.order_by(deliveries.c.id.desc()).limit(limit)).mappings()
        return [dict(r) for r in rows]

    return q


def attempts_of(delivery_ids: Sequence[str]) -> Callable[[Connection], dict[str, list[dict[str, Any]]]]:
    def q(conn: Connection) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {d: [] for d in delivery_ids}
        if not delivery_ids:
            return out
        rows = conn.execute(
            select(attempts)
            .where(attempts.c.delivery_id.in_(list(delivery_ids)))
            .order_by(attempts.c.delivery_id, attempts.c.attempt, attempts.c.started_at)
        ).mappings()
        for r in rows:
            out[r["delivery_id"]].append(dict(r))
        return out

    return q


def replay(originals: list[dict[str, Any]]) -> Operation[list[str]]:
    """New deliveries repeating `originals` (same message id and payload, so receivers can deduplicate),
    to each subscription's URL. A disabled subscription is re-enabled: replaying is an operator's explicit
    request to try that receiver again."""

    def op(conn: Connection, deltas: Deltas) -> list[str]:
        now = utcnow()
        rows = [
            new_delivery(
                d["subscription_id"],
                d["url"],
                d["message_id"],
                d["event_type"],
                d["payload"],
                batch_id=d["batch_id"],
                job_id=d["job_id"],
                now=now,
                replay_of=d["id"],
            )
            for d in originals
        ]
        if not rows:
            return []
        conn.execute(insert(deliveries), rows)
        conn.execute(
            update(subscriptions)
            .where(subscriptions.c.id.in_({d["subscription_id"] for d in originals}))
            .values(disabled_at=None, disabled_reason=None)
        )
        return [r["id"] for r in rows]

    return op


# ---------------------------------------------------------------------------------------------- sweeping


def overdue_deliveries(before: datetime, limit: int = 500) -> Callable[[Connection], list[tuple[str, int]]]:
    """Pending deliveries whose next try is long past: Redis lost their arq job."""

    def q(conn: Connection) -> list[tuple[str, int]]:
        rows = conn.execute(
            select(deliveries.c.id, deliveries.c.attempts)
            .where(deliveries.c.status == DeliveryStatus.PENDING.value, deliveries.c.next_attempt_at < before)
            .order_by(deliveries.c.next_attempt_at)
            .limit(limit)
        )
        return [(r[0], int(r[1])) for r in rows]

    return q


def unannounced_batches(since: datetime, limit: int = 100) -> Callable[[Connection], list[str]]:
    """Finished batches whose subscription wants their event but has no batch delivery: the worker that
    finished them stopped before its event sink flushed. The sweeper announces them."""

    def q(conn: Connection) -> list[str]:
        has_delivery = exists().where(
            deliveries.c.subscription_id == subscriptions.c.id,
            deliveries.c.event_type.like("batch.%"),
        )
        rows = conn.execute(
            select(batches, subscriptions.c.events.label("subscription_events"))
            .select_from(batches.join(subscriptions, subscriptions.c.batch_id == batches.c.id))
            .where(
                subscriptions.c.primary.is_(True),
                subscriptions.c.disabled_at.is_(None),
                batches.c.state.in_([BatchState.COMPLETED.value, BatchState.CANCELLED.value]),
                batches.c.finished_at > since,
                ~has_delivery,
            )
            .order_by(batches.c.finished_at)
            .limit(limit)
        ).mappings()
        return sorted({r["id"] for r in rows if batch_event(dict(r)) in r["subscription_events"].split(",")})

    return q


def unannounced_jobs(since: datetime, until: datetime, limit: int = 5000) -> Callable[[Connection], list[Any]]:
    """Jobs finished between `since` and `until` whose event a subscription of their batch wants (or that
    carry their own `webhook_url`) but that have no delivery: the worker that finished them died within the
    event sink's buffer. Rows (batch_id, job_id, state), oldest first; the sweep fans them out again, and the
    dedupe key keeps anything that did get out from going twice."""
    from shared.tables import Job, JobState

    jobs = Job.__table__  # type: ignore[attr-defined]
    succeeded, failed = JobState.SUCCEEDED.value, JobState.FAILED.value
    wanted = exists().where(
        subscriptions.c.batch_id == jobs.c.batch_id,
        subscriptions.c.primary.is_(True),
        subscriptions.c.disabled_at.is_(None),
        or_(
            and_(jobs.c.state == succeeded, subscriptions.c.events.like(f"%{JOB_SUCCEEDED}%")),
            and_(jobs.c.state == failed, subscriptions.c.events.like(f"%{JOB_FAILED}%")),
            jobs.c.spec.like('%"webhook_url":%'),
        ),
    )
    # deliveries are indexed by message id, which for a job event is `job_message_id(job id)`
    delivered = exists().where(deliveries.c.message_id == literal(job_message_id("")) + jobs.c.id)

    def q(conn: Connection) -> list[Any]:
        return list(
            conn.execute(
                select(jobs.c.batch_id, jobs.c.id, jobs.c.state)
                .where(
                    jobs.c.state.in_([succeeded, failed]),
                    jobs.c.finished_at > since,
                    jobs.c.finished_at <= until,
                    wanted,
                    ~delivered,
                )
                .order_by(jobs.c.finished_at)
                .limit(limit)
            ).all()
        )

    return q


# ---------------------------------------------------------------------------------------------- replay
async def replay_deliveries(
    store: Any,
    redis: Any,
    prefix: str,
    *,
    delivery_id: str | None = None,
    message_id: str | None = None,
    batch_id: str | None = None,
    only_failed: bool = False,
    limit: int = 10_000,
) -> list[str]:
    """Send messages again (`routeyard webhooks replay`, the admin API): by delivery, by message (event) id,
    or every message of a batch — each message once per subscription, from its latest delivery. Returns the
    new deliveries' ids; their first try is enqueued at once."""
    from shared.webhooks import DELIVER_FUNCTION, arq_queue_name

    if delivery_id is None and message_id is None and batch_id is None:
        raise ValueError("give a delivery id, a message id or a batch id")
    found = await store.read(
        list_deliveries(delivery_id=delivery_id, message_id=message_id, batch_id=batch_id, limit=limit)
    )
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for d in found:  # newest first
        latest.setdefault((d["subscription_id"], d["message_id"]), d)
    chosen = [
        d
        for d in latest.values()
        if not only_failed or d["status"] in (DeliveryStatus.FAILED.value, DeliveryStatus.DISABLED.value)
    ]
    new_ids: list[str] = await store.write_direct(replay(chosen))
    for nid in new_ids:
        await redis.enqueue_job(DELIVER_FUNCTION, nid, _job_id=f"{nid}:1", _queue_name=arq_queue_name(prefix))
    return new_ids
