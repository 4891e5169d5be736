"""Files: uploads stored in the SQL store in 1 MiB chunks; output and error files generated on download.

Why the store: it is the one thing every gateway replica and worker already shares and that survives
restarts — a local disk would pin a file to one replica, an object store would be one more service to run.
Chunks keep memory flat both ways (an upload is copied a chunk at a time, a download streamed a chunk at a
time) and keep rows small for PostgreSQL and SQLite alike.

Why generate outputs: the answers are already in the jobs' rows; copying them into a file would double the
storage and could disagree with the record. A batch's output file (`file-{batch}-output`) holds its
succeeded jobs, its error file (`file-{batch}-errors`) the lines refused at submission and the jobs that
failed or were cancelled — both in OpenAI's batch output line shape, `{id, custom_id, response, error}`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import Connection, delete, func, insert, select, update

from producer.client import output_line
from producer.ingest import LineError
from shared.ids import new_id
from shared.store import Store, queries
from shared.store.writer import Deltas, Operation
from shared.tables import JobState
from shared.tables_gateway import FILE_CHUNK_BYTES, FileChunk, LineRejection, OpenAIBatch, StoredFile
from shared.timeutil import utcnow

files = StoredFile.__table__  # type: ignore[attr-defined]
chunks = FileChunk.__table__  # type: ignore[attr-defined]
rejections = LineRejection.__table__  # type: ignore[attr-defined]
openai_batches = OpenAIBatch.__table__  # type: ignore[attr-defined]

OUTPUT, ERRORS = "output", "errors"


def new_file_id() -> str:
    return "file-" + new_id("f").removeprefix("f_")


def generated_file_id(batch_id: str, kind: str) -> str:
    return f"file-{batch_id}-{kind}"


def parse_generated(file_id: str) -> tuple[str, str] | None:
    """(batch id, kind) for a generated file's id, else None."""
    if not file_id.startswith("file-bat_"):
        return None
    body = file_id.removeprefix("file-")
    batch_id, _, kind = body.rpartition("-")
    if kind not in (OUTPUT, ERRORS) or not batch_id:
        return None
    return batch_id, kind


# ---------------------------------------------------------------------------------------------- uploads
class UploadTooLarge(Exception):
    pass


def store_upload(
    source: BinaryIO, *, filename: str, purpose: str, api_key_id: str | None, max_bytes: int
) -> Operation[dict[str, Any]]:
    """Copy an upload into the store a chunk at a time, in one transaction: a file is visible complete or
    not at all."""

    def op(conn: Connection, deltas: Deltas) -> dict[str, Any]:
        fid = new_file_id()
        now = utcnow()
        conn.execute(
            insert(files).values(
                id=fid, created_at=now, api_key_id=api_key_id, purpose=purpose, filename=filename, status="uploaded"
            )
        )
        size = seq = 0
        while True:
            data = source.read(FILE_CHUNK_BYTES)
            if not data:
                break
            size += len(data)
            if size > max_bytes:
                raise UploadTooLarge(f"the file is larger than {max_bytes} bytes")
            conn.execute(insert(chunks).values(file_id=fid, seq=seq, data=data))
            seq += 1
        conn.execute(update(files).where(files.c.id == fid).values(bytes=size, chunks=seq, status="processed"))
        return {
            "id": fid,
            "created_at": now,
            "api_key_id": api_key_id,
            "purpose": purpose,
            "filename": filename,
            "bytes": size,
            "chunks": seq,
            "status": "processed",
            "expires_at": None,
        }

    return op


def file_row(file_id: str) -> Callable[[Connection], dict[str, Any] | None]:
    def q(conn: Connection) -> dict[str, Any] | None:
        row = conn.execute(select(files).where(files.c.id == file_id)).mappings().first()
        return None if row is None else dict(row)

    return q


def file_list(
    *, api_key_id: str | None, all_keys: bool, purpose: str | None, after: str | None, limit: int, ascending: bool
) -> Callable[[Connection], list[dict[str, Any]]]:
    def q(conn: Connection) -> list[dict[str, Any]]:
        stmt = select(files)
        if not all_keys:
            stmt = stmt.where(files.c.api_key_id == api_key_id)
        if purpose is not None:
            stmt = stmt.where(files.c.purpose == purpose)
        if after is not None:
            stmt = stmt.where(files.c.id > after if ascending else files.c.id < after)
        stmt = stmt.order_by(files.c.id if ascending else files.c.id.desc()).limit(limit)
        return [dict(r) for r in conn.execute(stmt).mappings()]

    return q


def delete_file(file_id: str) -> Operation[bool]:
    def op(conn: Connection, deltas: Deltas) -> bool:
        conn.execute(delete(chunks).where(chunks.c.file_id == file_id))
        return bool(conn.execute(delete(files).where(files.c.id == file_id)).rowcount)

    return op


def _chunk(file_id: str, seq: int) -> Callable[[Connection], bytes | None]:
    def q(conn: Connection) -> bytes | None:
        row = conn.execute(select(chunks.c.data).where(chunks.c.file_id == file_id, chunks.c.seq == seq)).first()
        return None if row is None else bytes(row[0])

    return q


def chunks_sync(store: Store, file_id: str, n_chunks: int) -> Iterator[bytes]:
    """A stored file's chunks, read one query at a time on the calling thread (ingestion runs on a thread)."""
    for seq in range(n_chunks):
        data = store.read_sync(_chunk(file_id, seq))
        if data is None:
            return
        yield data


async def chunks_async(store: Store, file_id: str, n_chunks: int) -> AsyncIterator[bytes]:
    for seq in range(n_chunks):
        data = await store.read(_chunk(file_id, seq))
        if data is None:
            return
        yield data


# ---------------------------------------------------------------------------------------------- OpenAI batches
def openai_batch_row(batch_id: str) -> Callable[[Connection], dict[str, Any] | None]:
    """What `POST /v1/batches` recorded beside the batch: input file, endpoint, completion window."""

    def q(conn: Connection) -> dict[str, Any] | None:
        r = conn.execute(select(openai_batches).where(openai_batches.c.batch_id == batch_id)).mappings().first()
        return None if r is None else dict(r)

    return q


def insert_openai_batch(values: dict[str, Any]) -> Operation[None]:
    def op(conn: Connection, deltas: Deltas) -> None:
        conn.execute(insert(openai_batches).values(**values))

    return op


# ---------------------------------------------------------------------------------------------- rejected lines
def store_rejections(batch_id: str, errors: list[LineError]) -> Operation[None]:
    rows = [
        {"batch_id": batch_id, "line_no": e.line_no, "custom_id": e.custom_id, "code": e.code, "message": e.message}
        for e in errors
    ]

    def op(conn: Connection, deltas: Deltas) -> None:
        if rows:
            conn.execute(insert(rejections), rows)

    return op


def rejection_page(
    batch_id: str, *, after_line: int = 0, limit: int = 1000
) -> Callable[[Connection], list[dict[str, Any]]]:
    def q(conn: Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(rejections)
            .where(rejections.c.batch_id == batch_id, rejections.c.line_no > after_line)
            .order_by(rejections.c.line_no)
            .limit(limit)
        ).mappings()
        return [dict(r) for r in rows]

    return q


def rejection_count(batch_id: str) -> Callable[[Connection], int]:
    def q(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).where(rejections.c.batch_id == batch_id)).scalar_one())

    return q


async def iter_rejections(store: Store, batch_id: str) -> AsyncIterator[dict[str, Any]]:
    after = 0
    while True:
        page = await store.read(rejection_page(batch_id, after_line=after))
        if not page:
            return
        for r in page:
            yield r
        after = page[-1]["line_no"]


# ---------------------------------------------------------------------------------------------- generated files
def openai_line(row: dict[str, Any]) -> dict[str, Any]:
    """A job as one line of an OpenAI batch output or error file: exactly `{id, custom_id, response, error}`."""
    line = output_line(row)
    error = line["error"]
    if row["state"] == JobState.CANCELLED.value:
        error = {"code": "batch_cancelled", "message": "the batch was cancelled before this request ran"}
    return {"id": line["id"], "custom_id": line["custom_id"], "response": line["response"], "error": error}


def rejection_line(batch_id: str, r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"batch_req_{batch_id.removeprefix('bat_')}_line{r['line_no']}",
        "custom_id": r["custom_id"],
        "response": None,
        "error": {"code": r["code"], "message": f"line {r['line_no']}: {r['message']}"},
    }


async def generated_lines(store: Store, batch_id: str, kind: str) -> AsyncIterator[bytes]:
    """A generated file's content, line by line, a page of jobs at a time."""
    if kind == ERRORS:
        async for r in iter_rejections(store, batch_id):
            yield _jsonl(rejection_line(batch_id, r))
    states = [JobState.SUCCEEDED.value] if kind == OUTPUT else [JobState.FAILED.value, JobState.CANCELLED.value]
    after: str | None = None
    while True:
        page = await store.read(queries.job_page(batch_id, after_id=after, states=states))
        if not page:
            return
        for row in page:
            yield _jsonl(openai_line(row))
        after = page[-1]["id"]


def _jsonl(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def unix(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp())
