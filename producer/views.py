"""How a batch looks to the outside (native API, webhook payloads): built from the batch row alone.

The row carries counters (`n_total`, `n_succeeded`, …, `cost_total`) that the worker updates in the same
transaction as each job's terminal write, so a view of a 100k-job batch costs one primary-key read — never a
scan of its jobs. `active` (queued + running) is what is left of `n_total`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from shared.models import Priority
from shared.tables import BatchState


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def done_count(row: dict[str, Any]) -> int:
    return int(row["n_succeeded"] + row["n_failed"] + row["n_cancelled"])


def is_terminal(row: dict[str, Any]) -> bool:
    return row["state"] in (BatchState.COMPLETED.value, BatchState.CANCELLED.value)


def batch_view(row: dict[str, Any], *, eta_s: float | None = None) -> dict[str, Any]:
    done = done_count(row)
    unpriced = row["unpriced_calls"]
    try:
        priority = Priority(row["priority"]).name.lower()
    except ValueError:
        priority = str(row["priority"])
    return {
        "id": row["id"],
        "object": "routeyard.batch",
        "state": row["state"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "finished_at": _iso(row["finished_at"]),
        "class": row["default_class"],
        "priority": priority,
        "max_total_cost": None if row["max_total_cost"] is None else str(row["max_total_cost"]),
        "metadata": json.loads(row["metadata_json"]) if row["metadata_json"] else None,
        "webhook_url": row["webhook_url"],
        "counts": {
            "total": row["n_total"],
            "succeeded": row["n_succeeded"],
            "failed": row["n_failed"],
            "cancelled": row["n_cancelled"],
            "active": max(0, row["n_total"] - done),
            "rejected": row["n_rejected"],
        },
        "cost_total": str(row["cost_total"]),
        "cost_complete": unpriced == 0,
        "unpriced_calls": unpriced,
        "usage": {"input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"]},
        "eta_seconds": None if eta_s is None else round(eta_s, 1),
    }
