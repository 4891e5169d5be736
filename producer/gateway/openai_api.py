"""The OpenAI Batch and Files APIs, as the official SDKs call them.

    POST /v1/files                   multipart `file` + `purpose=batch` → File
    GET  /v1/files                   `?purpose=&after=&limit=&order=`
    GET  /v1/files/{id}              File
    GET  /v1/files/{id}/content      the bytes (uploads) or the generated JSONL (output and error files)
    DELETE /v1/files/{id}
    POST /v1/batches                 {input_file_id, endpoint, completion_window, metadata} → Batch
    GET  /v1/batches                 newest first, `?after=&limit=`
    GET  /v1/batches/{id}
    POST /v1/batches/{id}/cancel

Batches submitted through routeyard's own API are listed and readable here too (their `input_file_id` is
empty). Statuses: `validating` while the input is being read and checked, `in_progress` while jobs run, `completed`
when every job is done (an input with no valid line is `failed`), `cancelled` after a cancel. (`finalizing`
is never needed — outputs are generated on download — and a batch does not expire: jobs have their own
deadline, `routing.job_deadline_s`.) `request_counts.failed` counts failed, cancelled and rejected requests.
Unlike OpenAI, invalid lines do not fail the whole batch: they are listed in `errors` (the first 100) and go
to the error file with their line numbers, and the rest run — unless `metadata.routeyard_strict` is true.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from producer.client import BatchOptions
from producer.gateway.errors import ApiError, bad_request
from producer.gateway.files import (
    ERRORS,
    OUTPUT,
    UploadTooLarge,
    chunks_async,
    chunks_sync,
    delete_file,
    file_list,
    generated_file_id,
    generated_lines,
    insert_openai_batch,
    openai_batch_row,
    rejection_page,
    store_upload,
    unix,
)
from producer.gateway.lines import lines_from_chunks, with_defaults
from producer.gateway.native import Gw, Who
from producer.gateway.schemas import (
    BatchCreate,
    BatchErrorItem,
    BatchErrors,
    BatchList,
    BatchObject,
    BatchUsage,
    FileDeleted,
    FileList,
    FileObject,
    InputTokensDetails,
    OpenAIStatus,
    OutputTokensDetails,
    RequestCounts,
    WebhookReveal,
)
from producer.gateway.service import Gateway
from producer.ingest import Line, LineError
from producer.views import is_terminal
from shared.models import Priority, ProviderPreferences
from shared.money import MAX_USD
from shared.store import queries
from shared.tables import BatchState

router = APIRouter(prefix="/v1", tags=["openai"])

ENDPOINTS = ("/v1/chat/completions",)
WINDOW = "24h"
SHOWN_ERRORS = 100


# ---------------------------------------------------------------------------------------------- files
def file_object(row: dict[str, Any]) -> FileObject:
    return FileObject(
        id=row["id"],
        bytes=row["bytes"],
        created_at=unix(row["created_at"]) or 0,
        filename=row["filename"],
        purpose=row["purpose"],
        status=row["status"] if row["status"] in ("uploaded", "processed", "error") else "processed",
        expires_at=unix(row["expires_at"]),
    )


@router.post("/files", response_model=FileObject, summary="Upload a file (purpose=batch)")
async def create_file(
    file: Annotated[UploadFile, File(description="JSONL: one OpenAI batch request a line")],
    purpose: Annotated[str, Form(max_length=32)],
    p: Who,
    gw: Gw,
) -> FileObject:
    if purpose != "batch":
        raise bad_request(f"purpose {purpose!r} is not supported here: only 'batch'", param="purpose")
    name = (file.filename or "upload.jsonl")[:512]
    try:
        row = await gw.store.write_direct(
            store_upload(file.file, filename=name, purpose=purpose, api_key_id=p.key_id, max_bytes=gw.max_upload_bytes)
        )
    except UploadTooLarge as e:
        raise ApiError(413, str(e), code="upload_too_large") from None
    finally:
        await file.close()
    return file_object(row)


@router.get("/files", response_model=FileList, summary="Uploaded files")
async def list_files(
    p: Who,
    gw: Gw,
    purpose: Annotated[str | None, Query(max_length=32)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: int = 100,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    limit = max(1, min(limit, 10_000))
    if not p.admin and p.tenant is None:
        return FileList(data=[])
    rows = await gw.store.read(
        file_list(
            api_key_id=p.tenant,
            all_keys=p.admin,
            purpose=purpose,
            after=after,
            limit=limit + 1,
            ascending=order == "asc",
        )
    )
    page = rows[:limit]
    return FileList(
        data=[file_object(r) for r in page],
        first_id=page[0]["id"] if page else None,
        last_id=page[-1]["id"] if page else None,
        has_more=len(rows) > limit,
    )


@router.get("/files/{file_id}", response_model=FileObject, summary="A file")
async def get_file(file_id: str, p: Who, gw: Gw) -> FileObject:
    return file_object(await gw.file_for(p, file_id))


@router.delete("/files/{file_id}", response_model=FileDeleted, summary="Delete an uploaded file")
async def remove_file(file_id: str, p: Who, gw: Gw) -> FileDeleted:
    row = await gw.file_for(p, file_id)
    if "generated" in row:
        raise bad_request("output and error files are part of their batch and cannot be deleted")
    return FileDeleted(id=file_id, deleted=await gw.store.write_direct(delete_file(file_id)))


@router.get(
    "/files/{file_id}/content",
    summary="A file's content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def file_content(file_id: str, p: Who, gw: Gw) -> StreamingResponse:
    row = await gw.file_for(p, file_id, size=False)
    if "generated" in row:  # streamed as it is generated (chunked: its size is not known up front)
        batch_id, kind = row["generated"]
        return StreamingResponse(generated_lines(gw.store, batch_id, kind), media_type="application/octet-stream")
    body: AsyncIterator[bytes] = chunks_async(gw.store, file_id, row["chunks"])
    return StreamingResponse(body, media_type="application/octet-stream", headers={"Content-Length": str(row["bytes"])})


# ---------------------------------------------------------------------------------------------- batches
def _openai_status(row: dict[str, Any]) -> OpenAIStatus:
    state = row["state"]
    if state == BatchState.SUBMITTING.value:
        return "validating"
    if state == BatchState.OPEN.value:
        return "in_progress"
    if state == BatchState.CANCELLED.value:
        return "cancelled"
    return "failed" if row["n_total"] == 0 else "completed"


async def batch_object(
    gw: Gateway, row: dict[str, Any], extra: dict[str, Any] | None = None, webhook: WebhookReveal | None = None
) -> BatchObject:
    if extra is None:
        extra = await gw.store.read(openai_batch_row(row["id"])) or {}
    status = _openai_status(row)
    terminal = is_terminal(row)
    created = unix(row["created_at"]) or 0
    finished = unix(row["finished_at"])
    failed = row["n_failed"] + row["n_cancelled"] + row["n_rejected"]
    errors: BatchErrors | None = None
    if row["n_rejected"]:
        shown = await gw.store.read(rejection_page(row["id"], limit=SHOWN_ERRORS))
        errors = BatchErrors(
            data=[BatchErrorItem(code=r["code"], line=r["line_no"], message=r["message"]) for r in shown]
        )
    elif status == "failed":
        errors = BatchErrors(data=[BatchErrorItem(code="empty_file", message="the input file has no requests")])
    metadata = json.loads(row["metadata_json"]) if row["metadata_json"] else None
    return BatchObject(
        id=row["id"],
        endpoint=extra.get("endpoint", "/v1/chat/completions"),
        errors=errors,
        input_file_id=extra.get("input_file_id", ""),
        completion_window=extra.get("completion_window", WINDOW),
        status=status,
        output_file_id=generated_file_id(row["id"], OUTPUT) if terminal and row["n_succeeded"] else None,
        error_file_id=generated_file_id(row["id"], ERRORS) if terminal and failed else None,
        created_at=created,
        in_progress_at=created if status != "validating" else None,
        expires_at=created + int(timedelta(hours=24).total_seconds()),
        completed_at=finished if status == "completed" else None,
        failed_at=finished if status == "failed" else None,
        cancelling_at=finished if status == "cancelled" else None,
        cancelled_at=finished if status == "cancelled" else None,
        request_counts=RequestCounts(
            total=row["n_total"] + row["n_rejected"], completed=row["n_succeeded"], failed=failed
        ),
        metadata=metadata,
        usage=BatchUsage(
            input_tokens=row["input_tokens"],
            input_tokens_details=InputTokensDetails(),
            output_tokens=row["output_tokens"],
            output_tokens_details=OutputTokensDetails(),
            total_tokens=row["input_tokens"] + row["output_tokens"],
        ),
        routeyard_cost_total=str(row["cost_total"]),
        routeyard_webhook=webhook,
    )


def _options_from_metadata(
    metadata: dict[str, str],
) -> tuple[BatchOptions, list[str] | None, ProviderPreferences | None]:
    """routeyard's options, carried in OpenAI `metadata` under `routeyard_*` keys."""

    def get(key: str) -> str | None:
        v = metadata.get(f"routeyard_{key}")
        return v.strip() if v is not None and v.strip() else None

    priority = get("priority")
    cost = get("max_total_cost")
    try:
        prio = Priority[priority.upper()] if priority else None
    except KeyError:
        raise bad_request("metadata.routeyard_priority must be high, normal or low", param="metadata") from None
    try:
        budget = Decimal(cost) if cost else None
    except InvalidOperation:
        budget = Decimal(-1)
    if budget is not None and (not budget.is_finite() or budget <= 0 or budget > MAX_USD):
        raise bad_request(
            f"metadata.routeyard_max_total_cost must be a positive number of dollars, at most {MAX_USD:,}",
            param="metadata",
        )
    provider = get("provider")
    try:
        prefs = ProviderPreferences.model_validate_json(provider) if provider else None
    except ValidationError as e:
        raise bad_request(f"metadata.routeyard_provider: not a provider object ({e.error_count()} errors)") from None
    models = [m.strip() for m in (get("models") or "").split(",") if m.strip()] or None
    events = [e.strip() for e in (get("webhook_events") or "").split(",") if e.strip()] or None
    options = BatchOptions(
        default_class=get("class"),
        priority=prio,
        max_total_cost=budget,
        webhook_url=get("webhook_url"),
        webhook_events=events,
        strict=(get("strict") or "").lower() in ("1", "true", "yes"),
    )
    return options, models, prefs


@router.post("/batches", response_model=BatchObject, summary="Create a batch from an uploaded file")
async def create_batch(body: BatchCreate, p: Who, gw: Gw) -> JSONResponse:
    if body.endpoint not in ENDPOINTS:
        raise bad_request(
            f"endpoint {body.endpoint!r} is not served here: use {', '.join(ENDPOINTS)}", param="endpoint"
        )
    if body.completion_window != WINDOW:
        raise bad_request(f"completion_window must be {WINDOW!r}", param="completion_window")
    source = await gw.file_for(p, body.input_file_id)
    if "generated" in source or source["purpose"] != "batch":
        raise bad_request(f"file {body.input_file_id} was not uploaded with purpose 'batch'", param="input_file_id")
    options, models, prefs = _options_from_metadata(body.metadata or {})
    options.metadata = body.metadata
    options.api_key_id = p.key_id
    options.source = f"openai:{body.input_file_id}"
    store = gw.store

    def lines() -> Iterator[Line | LineError]:
        chunks = chunks_sync(store, source["id"], source["chunks"])
        return with_defaults(lines_from_chunks(chunks), models=models, provider=prefs)

    report, shown = await gw.submit(lines, options)
    if report.batch_id is None:
        errors = "; ".join(f"line {e.line_no}: {e.message}" for e in shown[:5])
        raise ApiError(
            400,
            f"{report.rejected} line(s) are invalid and routeyard_strict is set: nothing was submitted ({errors})",
            code="invalid_input_file",
            param="input_file_id",
        )
    extra = {
        "batch_id": report.batch_id,
        "input_file_id": body.input_file_id,
        "endpoint": body.endpoint,
        "completion_window": body.completion_window,
    }
    await gw.store.write_direct(insert_openai_batch(extra))
    row = await gw.store.read(queries.batch_row(report.batch_id))
    assert row is not None
    webhook = WebhookReveal(**report.webhook.reveal()) if report.webhook else None
    obj = await batch_object(gw, row, extra, webhook)
    return JSONResponse(obj.model_dump(mode="json"))


@router.get("/batches", response_model=BatchList, summary="Batches, newest first")
async def list_batches(
    p: Who, gw: Gw, after: Annotated[str | None, Query(max_length=64)] = None, limit: int = 20
) -> BatchList:
    limit = max(1, min(limit, 100))
    if not p.admin and p.tenant is None:
        return BatchList(data=[])
    rows = await gw.store.read(
        queries.batch_list(api_key_id=p.tenant, all_keys=p.admin, before_id=after, limit=limit + 1)
    )
    page = rows[:limit]
    data = [await batch_object(gw, r) for r in page]
    return BatchList(
        data=data,
        first_id=page[0]["id"] if page else None,
        last_id=page[-1]["id"] if page else None,
        has_more=len(rows) > limit,
    )


@router.get("/batches/{batch_id}", response_model=BatchObject, summary="A batch")
async def get_batch(batch_id: str, p: Who, gw: Gw) -> BatchObject:
    return await batch_object(gw, await gw.batch_for(p, batch_id))


@router.post("/batches/{batch_id}/cancel", response_model=BatchObject, summary="Cancel a batch")
async def cancel_batch(batch_id: str, p: Who, gw: Gw) -> BatchObject:
    row = await gw.batch_for(p, batch_id)
    return await batch_object(gw, await gw.cancel_batch(row))
