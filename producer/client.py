"""The Python client: submit jobs (one, many, or a JSONL file), follow a batch, read its results.

Submission is the durable step: jobs are committed to the store in chunks and only then enqueued on Redis,
a chunk per round trip (pipelined: never one round trip per job). If the process dies between the two,
the sweeper enqueues what the store holds. Memory stays bounded: a file is streamed chunk by chunk.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, insert, update

from producer.admission import KeyGate, admit
from producer.ingest import Line, LineError, read_lines
from producer.validate import SpecChecker
from shared.auth import Principal
from shared.catalog import Catalog
from shared.crypto import SecretBox
from shared.errors import ConfigError, InputError
from shared.ids import batch_id as new_batch_id
from shared.ids import job_id as new_job_id
from shared.models import JobSpec, Priority
from shared.queue import JobQueue
from shared.store import Store, queries
from shared.store.writer import Deltas, complete_if_done
from shared.tables import Batch, BatchState, Job, JobState
from shared.timeutil import utcnow
from shared.webhook_targets import WebhookTargetGuard
from shared.webhooks import BATCH_EVENTS, Subscription, announce, parse_events, subscribe

CHUNK = 1000
batches = Batch.__table__  # type: ignore[attr-defined]
jobs = Job.__table__  # type: ignore[attr-defined]


@dataclass
class SubmitReport:
    batch_id: str | None
    accepted: int = 0
    errors: list[LineError] = field(default_factory=list)
    rejected_all: bool = False
    webhook: Subscription | None = None
    """The webhook subscription made for this submission: its secret is shown once, never logged."""
    errors_passed_on: int = 0
    """Rejected lines handed to an `on_errors` callback instead of kept in `errors`."""

    @property
    def rejected(self) -> int:
        return len(self.errors) + self.errors_passed_on


@dataclass
class BatchOptions:
    default_class: str | None = None
    priority: Priority | None = None
    """Overrides every job's priority when given (a batch runs at one level)."""
    max_total_cost: Decimal | None = None
    metadata: dict[str, str] | None = None
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    """Events sent to `webhook_url` (default: the batch events; add `job.succeeded`/`job.failed` for every job)."""
    api_key_id: str | None = None
    principal: Principal | None = None
    """Who submits: its router key is recorded on every job and checked (disabled, expired, over its limit,
    asking for what it may not use). `api_key_id` alone does the same for tools that act for a key."""
    source: str | None = None
    strict: bool = False
    """All-or-nothing: one bad line rejects the whole file."""


ProgressFn = Callable[[int, int], None]


class Producer:
    def __init__(self, store: Store, queue: JobQueue, catalog: Catalog, *, box: SecretBox | None = None) -> None:
        self.store = store
        self.queue = queue
        self.catalog = catalog
        self.checker = SpecChecker(catalog)
        self.box = box
        """Encrypts webhook secrets at rest; needed only for submissions with a webhook."""
        self.webhook_guard = WebhookTargetGuard(allow_private=catalog.config.webhooks.allow_private_targets)

    # ------------------------------------------------------------------ submission
    async def submit_file(
        self, path: Path | str, options: BatchOptions | None = None, progress: ProgressFn | None = None
    ) -> SubmitReport:
        options = options or BatchOptions()
        options.source = options.source or str(path)
        if options.strict:
            gate = await self._admit(options)
            with open(path, "rb") as f:  # noqa: ASYNC230 - submission reads its file line by line; nothing else waits
                errors = [e for e in self._checked(read_lines(f), set(), options, gate) if isinstance(e, LineError)]
            if errors:
                await self._flush_refusals(gate, None)
                return SubmitReport(None, 0, errors, rejected_all=True)
        with open(path, "rb") as f:  # noqa: ASYNC230 - as above; each chunk awaits the store and Redis
            return await self.submit_lines(read_lines(f), options, progress)

    async def submit_stream(self, stream: BinaryIO, options: BatchOptions | None = None) -> SubmitReport:
        options = options or BatchOptions()
        if options.strict:
            gate = await self._admit(options)
            lines = list(read_lines(stream))
            errors = [e for e in self._checked(iter(lines), set(), options, gate) if isinstance(e, LineError)]
            if errors:
                await self._flush_refusals(gate, None)
                return SubmitReport(None, 0, errors, rejected_all=True)
            return await self.submit_lines(iter(lines), options)
        return await self.submit_lines(read_lines(stream), options)

    async def submit_specs(self, specs: Iterable[JobSpec], options: BatchOptions | None = None) -> SubmitReport:
        return await self.submit_lines((Line(i, s) for i, s in enumerate(specs, 1)), options or BatchOptions())

    async def submit_lines(
        self, lines: Iterable[Line | LineError], options: BatchOptions, progress: ProgressFn | None = None
    ) -> SubmitReport:
        self.check_options(options)
        gate, bid, report, now = await self._open_batch(options)
        seen: set[str] = set()
        chunk: list[dict[str, Any]] = []
        for item in self._checked(iter(lines), seen, options, gate):
            if isinstance(item, LineError):
                report.errors.append(item)
                continue
            chunk.append(self._row(bid, item, options, now, gate))
            if len(chunk) >= CHUNK:
                await self._flush(bid, chunk, options)
                report.accepted += len(chunk)
                chunk = []
                if progress:
                    progress(report.accepted, report.rejected)
        if chunk:
            await self._flush(bid, chunk, options)
            report.accepted += len(chunk)
        await self._seal_and_announce(bid, report)
        await self._flush_refusals(gate, bid)
        if progress:
            progress(report.accepted, report.rejected)
        return report

    async def _open_batch(self, options: BatchOptions) -> tuple[KeyGate | None, str, SubmitReport, datetime]:
        """The steps every submission starts with: the key's gate (refuses the whole submission when the key
        may not submit), the batch row, and its webhook subscription (stored before any job can finish)."""
        gate = await self._admit(options)
        now = utcnow()
        bid = new_batch_id()
        report = SubmitReport(bid)
        report.webhook = await self._subscribe(bid, options)
        await self.store.write_direct(self._insert_batch(bid, options, now))
        return gate, bid, report, now

    async def _admit(self, options: BatchOptions) -> KeyGate | None:
        """The router key's gate (raises KeyRefused for the whole submission), or None without a key."""
        if options.api_key_id is None and options.principal is not None:
            options.api_key_id = options.principal.key_id
        if options.api_key_id is None:
            return None
        return await admit(self.store, self.catalog, options.api_key_id, default_class=options.default_class)

    async def _flush_refusals(self, gate: KeyGate | None, bid: str | None) -> None:
        if gate is not None:
            await gate.flush_refusals(self.store, bid)

    def check_options(self, options: BatchOptions) -> None:
        """Refuse a submission whose batch-level options are wrong (unknown class, unsafe webhook target)."""
        if options.default_class is not None and options.default_class not in self.catalog.classes:
            raise InputError(f"unknown class {options.default_class!r}", code="unknown_class")
        if options.webhook_url is not None:
            self.webhook_guard.check(options.webhook_url)
            options.webhook_events = parse_events(options.webhook_events, BATCH_EVENTS)
            if self.box is None:
                raise ConfigError("webhooks need the master key: give the Producer a SecretBox")

    async def _subscribe(self, bid: str, options: BatchOptions) -> Subscription | None:
        """Store the submission's webhook subscription before its first job can finish."""
        if options.webhook_url is None or self.box is None:
            return None
        sub, op = subscribe(self.box, bid, options.webhook_url, options.webhook_events or [], options.api_key_id)
        await self.store.write_direct(op)
        return sub

    def _checked(
        self,
        lines: Iterator[Line | LineError],
        seen: set[str],
        options: BatchOptions | None = None,
        gate: KeyGate | None = None,
    ) -> Iterator[Line | LineError]:
        checker = gate or self.checker
        default_class = options.default_class if options is not None else None
        for item in lines:
            if isinstance(item, LineError):
                yield item
                continue
            spec = item.spec
            if spec.class_ is None and default_class is not None:
                spec = spec.model_copy(update={"class_": default_class})  # validated as it will run
            if spec.custom_id is not None:
                if spec.custom_id in seen:
                    yield LineError(
                        item.line_no,
                        "duplicate_custom_id",
                        f"custom_id {spec.custom_id!r} appears twice",
                        spec.custom_id,
                    )
                    continue
                seen.add(spec.custom_id)
            try:
                if spec.webhook_url is not None:
                    self._check_line_webhook(spec.webhook_url, options)
                yield Line(item.line_no, checker.check(spec))
            except InputError as e:
                yield LineError(item.line_no, e.code, e.message, spec.custom_id)

    def _check_line_webhook(self, url: str, options: BatchOptions | None) -> None:
        """A line's own `webhook_url` gets its job's events, signed with the submission's secret: so the
        submission must have a webhook (and a secret), and the target must be safe."""
        if options is not None and options.webhook_url is None:
            raise InputError(
                "a line's webhook_url needs a batch webhook (its secret signs the line's events): "
                "give the batch a webhook_url",
                code="invalid_request",
            )
        self.webhook_guard.check(url)

    def validation_errors(
        self, lines: Iterator[Line | LineError], options: BatchOptions, gate: KeyGate | None = None
    ) -> Iterator[LineError]:
        """Every line this submission would reject (an all-or-nothing pre-pass; synchronous, run it off-loop)."""
        for item in self._checked(lines, set(), options, gate):
            if isinstance(item, LineError):
                yield item

    async def submit_lines_threaded(
        self,
        lines: Iterator[Line | LineError],
        options: BatchOptions,
        *,
        on_errors: Callable[[str, list[LineError]], Awaitable[None]] | None = None,
    ) -> SubmitReport:
        """`submit_lines` for a shared event loop (the HTTP gateway): reading, parsing and validating each
        chunk of lines runs on a worker thread (DNS lookups for webhook targets included), so a 50,000-line
        upload never stalls other requests. With `on_errors`, rejected lines are passed on chunk by chunk
        (`on_errors(batch_id, errors)`) rather than kept, so memory stays flat however many lines are bad."""
        await asyncio.to_thread(self.check_options, options)
        gate, bid, report, now = await self._open_batch(options)
        checked = self._checked(lines, set(), options, gate)

        def next_chunk() -> tuple[list[dict[str, Any]], list[LineError], bool]:
            rows: list[dict[str, Any]] = []
            errors: list[LineError] = []
            for item in checked:
                if isinstance(item, LineError):
                    errors.append(item)
                else:
                    rows.append(self._row(bid, item, options, now, gate))
                if len(rows) >= CHUNK or len(errors) >= CHUNK:
                    return rows, errors, False
            return rows, errors, True

        done = False
        while not done:
            rows, errors, done = await asyncio.to_thread(next_chunk)
            if errors:
                if on_errors is not None:
                    await on_errors(bid, errors)
                    report.errors_passed_on += len(errors)
                else:
                    report.errors += errors
            if rows:
                await self._flush(bid, rows, options)
                report.accepted += len(rows)
        await self._seal_and_announce(bid, report)
        await self._flush_refusals(gate, bid)
        return report

    def _row(self, bid: str, line: Line, options: BatchOptions, now: Any, gate: KeyGate | None) -> dict[str, Any]:
        spec = line.spec
        if options.priority is not None:
            spec = spec.model_copy(update={"priority": options.priority})
        if spec.class_ is None and options.default_class is not None:
            spec = spec.model_copy(update={"class_": options.default_class})
        class_name = spec.class_ or self.catalog.config.routing.default_class
        return {
            "id": new_job_id(),
            "batch_id": bid,
            "custom_id": spec.custom_id,
            "line_no": line.line_no,
            "api_key_id": options.api_key_id,
            "team": gate.key.team if gate else None,
            "project": gate.key.project if gate else None,
            "environment": gate.key.environment if gate else None,
            "state": JobState.QUEUED.value,
            "priority": int(spec.priority),
            "class_name": class_name,
            "spec": spec.to_json(),
            "created_at": now,
            "updated_at": now,
            "deadline_at": now + timedelta(seconds=self.catalog.config.routing.job_deadline_s),
            "runs": 0,
            "attempts": 0,
            "unpriced_calls": 0,
        }

    async def _flush(self, bid: str, rows: list[dict[str, Any]], options: BatchOptions) -> None:
        def op(conn: Connection, deltas: Deltas) -> None:
            conn.execute(insert(jobs), rows)
            conn.execute(
                update(batches)
                .where(batches.c.id == bid)
                .values(n_total=batches.c.n_total + len(rows), updated_at=utcnow())  # the sweeper sees it alive
            )

        await self.store.write_direct(op)  # committed before it is enqueued: the store is the record
        by_priority: dict[int, list[str]] = {}
        for r in rows:
            by_priority.setdefault(r["priority"], []).append(r["id"])
        for p, ids in by_priority.items():
            await self.queue.enqueue(ids, priority=p, tenant=options.api_key_id, lane=bid)

    def _insert_batch(self, bid: str, options: BatchOptions, now: Any) -> Any:
        def op(conn: Connection, deltas: Deltas) -> None:
            conn.execute(
                insert(batches).values(
                    id=bid,
                    created_at=now,
                    updated_at=now,
                    state=BatchState.SUBMITTING.value,
                    api_key_id=options.api_key_id,
                    source=options.source,
                    default_class=options.default_class,
                    priority=int(options.priority if options.priority is not None else Priority.NORMAL),
                    max_total_cost=options.max_total_cost,
                    metadata_json=json.dumps(options.metadata) if options.metadata else None,
                    webhook_url=options.webhook_url,
                    cost_total=Decimal(0),
                )
            )

        return op

    def _seal(self, bid: str, rejected: int) -> Any:
        def op(conn: Connection, deltas: Deltas) -> list[str]:
            conn.execute(
                update(batches)
                .where(batches.c.id == bid, batches.c.state == BatchState.SUBMITTING.value)
                .values(state=BatchState.OPEN.value, n_rejected=rejected, updated_at=utcnow())
            )
            return complete_if_done(conn, [bid])  # every job may already have finished

        return op

    async def _seal_and_announce(self, bid: str, report: SubmitReport) -> None:
        completed = await self.store.write_direct(self._seal(bid, report.rejected))
        if completed and report.webhook is not None:
            # finished before it was sealed: no worker's write completed it, so no worker announces it
            await announce(self.queue.redis, self.queue.keys.prefix, bid)

    # ------------------------------------------------------------------ following a batch
    async def batch(self, batch_id: str) -> dict[str, Any] | None:
        return await self.store.read(queries.batch(batch_id))

    async def wait(
        self, batch_id: str, *, poll_s: float = 0.25, on_update: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        while True:
            b = await self.batch(batch_id)
            if b is None:
                raise KeyError(batch_id)
            if on_update:
                on_update(b)
            if b["state"] in (BatchState.COMPLETED.value, BatchState.CANCELLED.value):
                return b
            await asyncio.sleep(poll_s)

    async def results(self, batch_id: str, *, states: list[str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The batch's output lines, in submission order of ids, page by page."""
        after: str | None = None
        while True:
            page = await self.store.read(queries.job_page(batch_id, after_id=after, states=states))
            if not page:
                return
            for row in page:
                yield output_line(row)
            after = page[-1]["id"]


def output_line(row: dict[str, Any]) -> dict[str, Any]:
    """One results line in OpenAI's batch output shape, plus routeyard's fields."""
    succeeded = row["state"] == JobState.SUCCEEDED.value
    body = json.loads(row["result"]) if succeeded and row["result"] else None
    cost = row["cost"]
    unknown = row["unpriced_calls"] > 0
    return {
        "id": f"batch_req_{row['id'].removeprefix('job_')}",
        "custom_id": row["custom_id"],
        "response": (
            {"status_code": 200, "request_id": body.get("id") if body else None, "body": body} if succeeded else None
        ),
        "error": None if succeeded else {"code": row["error_class"] or row["state"], "message": row["error_message"]},
        "job_id": row["id"],
        "state": row["state"],
        "model": row["model"],
        "provider": row["provider"],
        "cost": None if cost is None and unknown else str(cost if cost is not None else Decimal(0)),
        "cost_complete": not unknown,
        "attempts": row["attempts"],
        "usage": ({"input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"]} if succeeded else None),
    }


def iter_jsonl(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    for r in rows:
        yield json.dumps(r, ensure_ascii=False) + "\n"
