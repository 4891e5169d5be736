"""Structured logs: one JSON object per line (`--log-format json`), carrying the job and batch a line is about.

A record gets `job_id` and `batch_id` from `extra={...}` or, without them, from `job_context` — a context
variable the dispatcher sets once at the start of each job's task, so every line logged while that job runs
(router, adapters, admission) carries its ids without each call site passing them. Messages and tracebacks
are redacted (`shared.redaction`): known secret shapes always, and the exact secrets `secrets()` returns
(provider keys from the environment, BYOK keys decrypted so far).

    {"ts": "2026-05-01T12:00:00.123Z", "level": "warning", "logger": "routeyard.worker",
     "msg": "...", "job_id": "job_…", "batch_id": "bat_…", "worker_id": "…"}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from shared.redaction import redact

job_context: ContextVar[tuple[str, str | None] | None] = ContextVar("routeyard_job", default=None)
"""(job id, batch id) of the job the current task runs."""

FIELDS = ("job_id", "batch_id", "attempt_id", "worker_id", "provider", "endpoint")


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Callable[[], Iterable[str]] | None = None, worker_id: str | None = None) -> None:
        super().__init__()
        self.secrets = secrets
        self.worker_id = worker_id

    def _secrets(self) -> list[str]:
        if self.secrets is None:
            return []
        try:
            return list(self.secrets())
        except Exception:
            return []

    def format(self, record: logging.LogRecord) -> str:
        secrets = self._secrets()
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage(), secrets),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if "job_id" not in out:
            current = job_context.get()
            if current is not None:
                out["job_id"] = current[0]
                if current[1] is not None:
                    out.setdefault("batch_id", current[1])
        if self.worker_id is not None:
            out.setdefault("worker_id", self.worker_id)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info), secrets)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup(level: str = "info", fmt: str = "text", secrets: Callable[[], Iterable[str]] | None = None) -> None:
    """Configure the root logger for a process: `text` (human) or `json` (one object per line)."""
    import sys

    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(secrets))
    elif fmt == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        raise ValueError(f"log format is text or json, not {fmt!r}")
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


__all__ = ["JsonFormatter", "job_context", "setup"]
