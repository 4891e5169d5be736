"""Helpers for the keys, BYOK and governance tests: ledger rows written directly, as the worker would."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, select

from shared.ids import attempt_id, job_id
from shared.store import Store
from shared.store.writer import Deltas
from shared.tables import Attempt, Job
from shared.tables_keys import RouterKey

jobs = Job.__table__  # type: ignore[attr-defined]
attempts = Attempt.__table__  # type: ignore[attr-defined]
api_keys = RouterKey.__table__  # type: ignore[attr-defined]


def _attribution(conn: Connection, key_id: str | None) -> dict[str, Any]:
    """The key's team, project and environment now, as the producer and the worker record them."""
    found = None
    if key_id is not None:
        found = conn.execute(
            select(api_keys.c.team, api_keys.c.project, api_keys.c.environment).where(api_keys.c.id == key_id)
        ).first()
    return dict(found._mapping) if found else {"team": None, "project": None, "environment": None}


NOW = datetime(2024, 2, 20, 12, 0, tzinfo=UTC)


def add_job(store: Store, key_id: str | None, created_at: datetime = NOW) -> str:
    jid = job_id()
    row = {
        "id": jid,
        "api_key_id": key_id,
        "state": "succeeded",
        "class_name": "basic",
        "spec": '{"prompt": "x"}',
        "created_at": created_at,
        "updated_at": created_at,
    }

    def op(conn: Connection, deltas: Deltas) -> None:
        conn.execute(insert(jobs), {**row, **_attribution(conn, key_id)})

    store.write_sync(op)
    return jid


def add_call(
    store: Store,
    key_id: str | None,
    *,
    cost: Decimal | None,
    billed_to: str = "credits",
    fee: Decimal | None = None,
    status: str = "succeeded",
    started_at: datetime = NOW,
    reserved: Decimal | None = None,
    tokens: tuple[int, int] = (100, 50),
    job: str | None = None,
) -> str:
    """One ledger row (and its job unless given). Returns the job id."""
    jid = job or add_job(store, key_id, started_at)
    row: dict[str, Any] = {
        "id": attempt_id(),
        "job_id": jid,
        "seq": 1,
        "run": 1,
        "worker_id": "w",
        "endpoint": "alpha/small",
        "provider": "alpha",
        "model": "small",
        "key_ref": "byok:pvk_x" if billed_to == "byok" else "pooled:alpha",
        "api_key_id": key_id,
        "billed_to": billed_to,
        "fee": fee,
        "status": status,
        "started_at": started_at,
        "input_tokens": tokens[0] if status == "succeeded" else None,
        "output_tokens": tokens[1] if status == "succeeded" else None,
        "reserved_cost": reserved,
        "cost": cost,
        "cost_estimated": status == "abandoned",
    }

    def op(conn: Connection, deltas: Deltas) -> None:
        conn.execute(insert(attempts), {**row, **_attribution(conn, key_id)})

    store.write_sync(op)
    return jid
