"""The gateway's working parts, shared by its routers: tenancy-checked lookups, submission (streamed, parsed
on a worker thread), cancellation, and the generated files' sizes."""

from __future__ import annotations

import asyncio
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from arq.connections import ArqRedis
from fastapi import Request
from sqlalchemy import Connection, update

from producer.client import BatchOptions, Producer, SubmitReport
from producer.gateway.auth import can_see
from producer.gateway.errors import ApiError, not_found
from producer.gateway.files import (
    file_row,
    generated_lines,
    parse_generated,
    store_rejections,
)
from producer.gateway.polling import BatchWatcher, RateTracker
from producer.ingest import Line, LineError
from producer.views import is_terminal
from shared.auth import Principal
from shared.catalog import Catalog
from shared.config import RouteyardConfig
from shared.crypto import SecretBox
from shared.queue import JobQueue
from shared.redis_keys import Keys
from shared.settings import Settings
from shared.store import Store, ops, queries
from shared.store.writer import Deltas, Operation
from shared.tables import Batch, BatchState
from shared.timeutil import utcnow
from shared.webhook_store import subscribed_batches
from shared.webhooks import announce

batches = Batch.__table__  # type: ignore[attr-defined]
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024
STRICT_ERRORS_SHOWN = 1000


class Gateway:
    def __init__(
        self,
        settings: Settings,
        config: RouteyardConfig,
        store: Store,
        redis: ArqRedis,
        box: SecretBox,
        *,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self.settings = settings
        self.config = config
        self.catalog = Catalog.from_config(config)
        self.store = store
        self.redis = redis
        self.box = box
        self.queue = JobQueue(redis, Keys(settings.redis_prefix))
        self.producer = Producer(store, self.queue, self.catalog, box=box)
        self.watcher = BatchWatcher(store)
        self.rates = RateTracker()
        self.max_upload_bytes = max_upload_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()

    # ------------------------------------------------------------------ lookups (404 when not visible)
    async def batch_for(self, p: Principal, batch_id: str) -> dict[str, Any]:
        row = await self.store.read(queries.batch_row(batch_id))
        if row is None or not can_see(p, row["api_key_id"]):
            raise not_found("batch", batch_id)
        return row

    async def job_for(self, p: Principal, job_id: str) -> dict[str, Any]:
        row = await self.store.read(queries.job(job_id))
        if row is None or not can_see(p, row["api_key_id"]):
            raise not_found("job", job_id)
        return row

    async def file_for(self, p: Principal, file_id: str, *, size: bool = True) -> dict[str, Any]:
        """An uploaded file's row, or a generated file's description (from its batch; `size=False` skips
        counting its bytes, which means generating it)."""
        generated = parse_generated(file_id)
        if generated is not None:
            batch_id, kind = generated
            row = await self.store.read(queries.batch_row(batch_id))
            if row is None or not can_see(p, row["api_key_id"]) or not is_terminal(row):
                raise not_found("file", file_id)
            return {
                "id": file_id,
                "created_at": row["finished_at"] or row["updated_at"],
                "api_key_id": row["api_key_id"],
                "purpose": "batch_output",
                "filename": f"{batch_id}_{kind}.jsonl",
                "bytes": await self.generated_size(file_id, batch_id, kind) if size else None,
                "status": "processed",
                "expires_at": None,
                "generated": (batch_id, kind),
            }
        found = await self.store.read(file_row(file_id))
        if found is None or not can_see(p, found["api_key_id"]):
            raise not_found("file", file_id)
        return found

    async def generated_size(self, file_id: str, batch_id: str, kind: str) -> int:
        """A generated file's size: counted once by generating it (a finished batch's files never change)."""
        if file_id in self._sizes:
            self._sizes.move_to_end(file_id)
            return self._sizes[file_id]
        size = 0
        async for line in generated_lines(self.store, batch_id, kind):
            size += len(line)
        self._sizes[file_id] = size
        if len(self._sizes) > 10_000:
            self._sizes.popitem(last=False)
        return size

    # ------------------------------------------------------------------ submission
    async def submit(
        self, lines: Callable[[], Iterator[Line | LineError]], options: BatchOptions, *, show_errors: int = 100
    ) -> tuple[SubmitReport, list[LineError]]:
        """Submit lines from `lines()` (a fresh iterator per pass). Parsing and validation run on a worker
        thread, a chunk at a time; rejected lines go to the batch's error file as they are found (the first
        `show_errors` are also returned). `options.strict`: a first pass finds every bad line, and any
        rejects the whole input."""
        if options.strict:
            errors, total = await asyncio.to_thread(self._strict_pass, lines, options)
            if total:
                report = SubmitReport(None, 0, errors, rejected_all=True, errors_passed_on=total - len(errors))
                return report, errors[:show_errors]
        shown: list[LineError] = []

        async def keep(batch_id: str, errors: list[LineError]) -> None:
            shown.extend(errors[: max(0, show_errors - len(shown))])
            await self.store.write_direct(store_rejections(batch_id, errors))

        report = await self.producer.submit_lines_threaded(lines(), options, on_errors=keep)
        if report.batch_id is not None:
            await self._recancel_if_cancelled(report.batch_id)
        return report, shown

    def _strict_pass(
        self, lines: Callable[[], Iterator[Line | LineError]], options: BatchOptions
    ) -> tuple[list[LineError], int]:
        shown: list[LineError] = []
        total = 0
        for e in self.producer.validation_errors(lines(), options):
            total += 1
            if len(shown) < STRICT_ERRORS_SHOWN:
                shown.append(e)
        return shown, total

    async def _recancel_if_cancelled(self, batch_id: str) -> None:
        """A cancel that arrived while lines were still being stored missed the later chunks."""
        row = await self.store.read(queries.batch_row(batch_id))
        if row is not None and row["state"] == BatchState.CANCELLED.value:
            await self.store.write_direct(ops.cancel_jobs(batch_id=batch_id))

    async def spool(self, request: Request) -> BinaryIO:
        """The request body in a temporary file (memory up to 1 MiB, then disk): the upload is complete and
        within the size limit before any batch exists, so a dropped connection leaves nothing half-made."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_upload_bytes:
            raise _too_large(self.max_upload_bytes)
        f = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - returned to the caller
        size = 0
        pending = bytearray()
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_upload_bytes:
                    raise _too_large(self.max_upload_bytes)
                pending += chunk
                if len(pending) >= SPOOL_MEMORY_BYTES:
                    await asyncio.to_thread(f.write, bytes(pending))
                    pending.clear()
            if pending:
                await asyncio.to_thread(f.write, bytes(pending))
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return f  # type: ignore[return-value]

    # ------------------------------------------------------------------ control
    async def cancel_batch(self, row: dict[str, Any]) -> dict[str, Any]:
        batch_id = row["id"]
        if not is_terminal(row):
            await self.store.write_direct(_cancel_batch(batch_id))
            await self._announce(batch_id)
        fresh = await self.store.read(queries.batch_row(batch_id))
        assert fresh is not None
        return fresh

    async def cancel_job(self, job: dict[str, Any]) -> None:
        cancelled = await self.store.write_direct(ops.cancel_jobs(job_ids=[job["id"]]))
        if cancelled and job["batch_id"] is not None:
            b = await self.store.read(queries.batch_row(job["batch_id"]))
            if b is not None and b["state"] == BatchState.COMPLETED.value:
                # this cancel may have finished the batch: announce it (a repeat is deduplicated by message id)
                await self._announce(job["batch_id"])

    async def _announce(self, batch_id: str) -> None:
        """Batch events from the gateway's own writes (a cancel): hand them to the workers' fan-out."""
        if await self.store.read(subscribed_batches([batch_id])):
            await announce(self.redis, self.settings.redis_prefix, batch_id)

    async def aclose(self) -> None:
        await self.watcher.aclose()


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"The upload is larger than {limit} bytes.", code="upload_too_large")


def _cancel_batch(batch_id: str) -> Operation[int]:
    """Cancel every queued or running job and mark the batch cancelled, in one transaction. Running calls
    finish, but their terminal writes then lose: the jobs stay cancelled (their cost is still recorded)."""

    def op(conn: Connection, deltas: Deltas) -> int:
        n = ops.cancel_jobs(batch_id=batch_id)(conn, deltas)
        now = utcnow()
        conn.execute(
            update(batches)
            .where(batches.c.id == batch_id, batches.c.state.in_([BatchState.SUBMITTING.value, BatchState.OPEN.value]))
            .values(state=BatchState.CANCELLED.value, finished_at=now, updated_at=now)
        )
        return n

    return op
