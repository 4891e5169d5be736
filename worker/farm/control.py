"""`/_farm/...`: inspect and steer a running farm over HTTP, for when it runs in another process.

    GET   /_farm/stats                      aggregates per provider
    GET   /_farm/requests?job_id=&provider=&attempt_id=   the per-request log
    GET   /_farm/providers[/{name}]         current behaviours
    PATCH /_farm/providers/{name}           merge JSON into a behaviour (validated), answer the new one
    POST  /_farm/reset                      forget requests, rate-limit windows and fault counters

In process, use `farm.record`, `farm.set_behaviour(name, **changes)` and `farm.reset()` directly.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from pydantic import ValidationError

if TYPE_CHECKING:
    from worker.farm.app import Farm

Answer = tuple[int, Any]


def _error(status: int, message: str, **extra: Any) -> Answer:
    return status, {"error": {"message": message, "type": "farm_control_error", **extra}}


def handle_control(farm: Farm, method: str, path: str, query: bytes, body: bytes) -> Answer:
    """Answer one control request; `path` is what follows `/_farm`."""
    if path == "/stats" and method == "GET":
        return 200, farm.record.stats_json()
    if path == "/requests" and method == "GET":
        params = {k: v[-1] for k, v in parse_qs(query.decode("latin-1")).items()}
        found = farm.record.find(
            job_id=params.get("job_id"), provider=params.get("provider"), attempt_id=params.get("attempt_id")
        )
        return 200, [farm.record.entry_json(entry) for entry in found]
    if path == "/reset" and method == "POST":
        farm.reset()
        return 200, {"reset": True}
    if path == "/providers" and method == "GET":
        return 200, {name: b.model_dump() for name, b in farm.behaviours.items()}
    if path.startswith("/providers/"):
        return _provider(farm, method, path.removeprefix("/providers/"), body)
    return _error(404, f"No farm control endpoint at {method} /_farm{path}")


def _provider(farm: Farm, method: str, name: str, body: bytes) -> Answer:
    current = farm.behaviours.get(name)
    if current is None:
        return _error(404, f"No provider named {name!r}")
    if method == "GET":
        return 200, current.model_dump()
    if method != "PATCH":
        return _error(405, f"{method} is not allowed on /_farm/providers/{name}")
    try:
        changes = json.loads(body or b"{}")
    except ValueError:
        return _error(400, "The request body is not valid JSON.")
    if not isinstance(changes, dict):
        return _error(400, "The request body must be a JSON object of behaviour fields.")
    try:
        return 200, farm.set_behaviour(name, **changes).model_dump()
    except ValidationError as exc:
        details = json.loads(exc.json(include_url=False, include_context=False))
        return _error(422, "Invalid behaviour change.", details=details)
