"""routeyard's own API, under `/v1/routeyard`: jobs and batches with classes, priorities, budgets, routing
preferences and webhooks; polling with ETags and long polls; results as JSONL.

    POST /v1/routeyard/jobs                      one job → {job_id, batch_id, state, webhook?}
    GET  /v1/routeyard/jobs/{id}                 result, attempts (the ledger), cost
    POST /v1/routeyard/jobs/{id}/cancel
    POST /v1/routeyard/batches                   a JSON array of lines, or {jobs: [...], class, priority, …}
    POST /v1/routeyard/batches/upload            JSONL as the raw body or a multipart `file`; options in the query
    GET  /v1/routeyard/batches                   newest first, `?after=ID&limit=N`
    GET  /v1/routeyard/batches/{id}              counts, cost, ETA; ETag / If-None-Match → 304; `?wait=30`
    GET  /v1/routeyard/batches/{id}/results      JSONL, `?state=succeeded&state=failed`
    GET  /v1/routeyard/batches/{id}/errors       the lines refused at submission, JSONL
    GET  /v1/routeyard/batches/{id}/webhooks     the batch's webhook deliveries and every try
    POST /v1/routeyard/batches/{id}/cancel
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import Field
from starlette.datastructures import UploadFile

from producer.client import BatchOptions, SubmitReport, iter_jsonl, output_line
from producer.gateway.auth import principal
from producer.gateway.errors import ApiError, bad_request
from producer.gateway.files import iter_rejections
from producer.gateway.lines import lines_from_chunks, read_chunks, with_defaults
from producer.gateway.polling import MAX_WAIT_S, etag_for, etag_matches
from producer.gateway.schemas import (
    BatchPage,
    BatchSubmit,
    JobSubmit,
    JobSubmitted,
    LineErrorView,
    SubmitResult,
    WebhookReveal,
)
from producer.gateway.service import Gateway
from producer.ingest import Line, LineError, parse_line
from producer.views import batch_view, is_terminal
from shared.auth import Principal
from shared.models import JobSpec, Priority, ProviderPreferences
from shared.store import queries
from shared.tables import JobState
from shared.webhook_store import attempts_of, list_deliveries
from shared.webhooks import JOB_EVENTS

router = APIRouter(prefix="/v1/routeyard", tags=["routeyard"])


def gateway(request: Request) -> Gateway:
    gw: Gateway | None = getattr(request.app.state, "gateway", None)
    if gw is None:
        raise ApiError(503, "The gateway is starting.", type_="server_error")
    return gw


Gw = Annotated[Gateway, Depends(gateway)]
JobLines = Annotated[list[dict[str, Any]], Field(min_length=1, max_length=10_000)]
Who = Annotated[Principal, Depends(principal)]


# ---------------------------------------------------------------------------------------------- views
def _iso(v: Any) -> Any:
    return v.isoformat().replace("+00:00", "Z") if v is not None else None


def job_view(row: dict[str, Any]) -> dict[str, Any]:
    line = output_line(row)
    return {
        **line,
        "object": "routeyard.job",
        "batch_id": row["batch_id"],
        "class": row["class_name"],
        "priority": Priority(row["priority"]).name.lower() if row["priority"] in (0, 1, 2) else row["priority"],
        "created_at": _iso(row["created_at"]),
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]),
        "attempt_log": [
            {
                "seq": a["seq"],
                "provider": a["provider"],
                "model": a["model"],
                "status": a["status"],
                "http_status": a["http_status"],
                "error_class": a["error_class"],
                "error_message": a["error_message"],
                "latency_ms": a["latency_ms"],
                "input_tokens": a["input_tokens"],
                "output_tokens": a["output_tokens"],
                "cost": None if a["cost"] is None else str(a["cost"]),
                "cost_estimated": a["cost_estimated"],
                "started_at": _iso(a["started_at"]),
                "finished_at": _iso(a["finished_at"]),
            }
            for a in row.get("attempt_rows", [])
        ],
    }


def _reveal(report: SubmitReport) -> WebhookReveal | None:
    return None if report.webhook is None else WebhookReveal(**report.webhook.reveal())


def _errors(errors: list[LineError]) -> list[LineErrorView]:
    return [LineErrorView(**e.to_json()) for e in errors]


def _priority(value: str | None) -> Priority | None:
    if value is None:
        return None
    try:
        return Priority[value.strip().upper()]
    except KeyError:
        raise bad_request("priority must be high, normal or low", param="priority") from None


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


# ---------------------------------------------------------------------------------------------- jobs
@router.post("/jobs", response_model=JobSubmitted, summary="Submit one job")
async def submit_job(body: JobSubmit, p: Who, gw: Gw) -> JobSubmitted:
    data = body.model_dump(by_alias=True, exclude_unset=True, exclude={"webhook_events"})
    spec = JobSpec.model_validate(data)
    options = BatchOptions(
        api_key_id=p.key_id,
        source="api:job",
        webhook_url=spec.webhook_url,
        webhook_events=body.webhook_events or list(JOB_EVENTS),
        strict=True,
    )
    report, shown = await gw.submit(lambda: iter([Line(1, spec)]), options)
    if report.rejected_all or report.batch_id is None:
        e = shown[0]
        raise bad_request(e.message, code=e.code)
    [job] = await gw.store.read(queries.job_page(report.batch_id, limit=1))
    return JobSubmitted(job_id=job["id"], batch_id=report.batch_id, state=job["state"], webhook=_reveal(report))


@router.get("/jobs/{job_id}", summary="A job: state, result, attempts, cost")
async def get_job(job_id: str, p: Who, gw: Gw) -> dict[str, Any]:
    return job_view(await gw.job_for(p, job_id))


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
async def cancel_job(job_id: str, p: Who, gw: Gw) -> dict[str, Any]:
    job = await gw.job_for(p, job_id)
    await gw.cancel_job(job)
    return job_view(await gw.job_for(p, job_id))


# ---------------------------------------------------------------------------------------------- batches
def _json_lines(items: list[dict[str, Any]]) -> Iterator[Line | LineError]:
    for i, item in enumerate(items, 1):
        parsed = parse_line(json.dumps(item).encode(), i)
        if parsed is None:
            continue
        yield parsed if isinstance(parsed, LineError) else Line(i, parsed)


async def _submitted(gw: Gateway, report: SubmitReport, shown: list[LineError]) -> SubmitResult:
    row = await gw.store.read(queries.batch_row(report.batch_id)) if report.batch_id else None
    return SubmitResult(
        batch_id=report.batch_id,
        accepted=report.accepted,
        rejected=report.rejected,
        rejected_all=report.rejected_all,
        errors=_errors(shown),
        webhook=_reveal(report),
        batch=batch_view(row) if row else None,
    )


@router.post("/batches", response_model=SubmitResult, summary="Submit a batch as JSON")
async def submit_batch(
    body: Annotated[BatchSubmit | JobLines, Body(description="An array of lines, or an object.")],
    p: Who,
    gw: Gw,
) -> JSONResponse:
    spec = body if isinstance(body, BatchSubmit) else BatchSubmit(jobs=body)
    options = BatchOptions(
        default_class=spec.class_,
        priority=_priority(spec.priority),
        max_total_cost=spec.max_total_cost,
        metadata=spec.metadata,
        webhook_url=spec.webhook_url,
        webhook_events=spec.webhook_events,
        api_key_id=p.key_id,
        source="api:json",
        strict=spec.strict,
    )
    items = spec.jobs
    report, shown = await gw.submit(
        lambda: with_defaults(_json_lines(items), models=spec.models, provider=spec.provider), options
    )
    result = await _submitted(gw, report, shown)
    return JSONResponse(result.model_dump(mode="json"), status_code=400 if report.rejected_all else 200)


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "JSONL, one job a line: the raw body (`Content-Type: application/jsonl`), or a "
        "multipart form with the file in `file`.",
        "content": {
            "application/jsonl": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post(
    "/batches/upload",
    response_model=SubmitResult,
    summary="Submit a batch as a JSONL upload",
    openapi_extra=_UPLOAD_BODY,
)
async def upload_batch(
    request: Request,
    p: Who,
    gw: Gw,
    klass: Annotated[str | None, Query(alias="class", max_length=64)] = None,
    priority: Annotated[str | None, Query(max_length=16)] = None,
    max_total_cost: Annotated[str | None, Query(max_length=32, description="dollars")] = None,
    models: Annotated[str | None, Query(max_length=2048, description="comma-separated")] = None,
    provider: Annotated[str | None, Query(max_length=4096, description="an OpenRouter provider object, JSON")] = None,
    webhook_url: Annotated[str | None, Query(max_length=2048)] = None,
    webhook_events: Annotated[str | None, Query(max_length=256, description="comma-separated")] = None,
    strict: bool = False,
) -> JSONResponse:
    options = BatchOptions(
        default_class=klass,
        priority=_priority(priority),
        max_total_cost=_money(max_total_cost),
        webhook_url=webhook_url,
        webhook_events=_csv(webhook_events),
        api_key_id=p.key_id,
        strict=strict,
    )
    prefs = _provider(provider)
    model_list = _csv(models)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=20)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise bad_request("multipart upload without a `file` part", param="file")
        if upload.size is not None and upload.size > gw.max_upload_bytes:
            await upload.close()
            raise ApiError(413, f"The upload is larger than {gw.max_upload_bytes} bytes.", code="upload_too_large")
        f = upload.file
        options.source = f"api:upload:{(upload.filename or 'file')[:200]}"
    else:
        f = await gw.spool(request)
        options.source = "api:upload"
    try:

        def lines() -> Iterator[Line | LineError]:
            f.seek(0)
            return with_defaults(lines_from_chunks(read_chunks(f)), models=model_list, provider=prefs)

        report, shown = await gw.submit(lines, options)
    finally:
        f.close()
    result = await _submitted(gw, report, shown)
    return JSONResponse(result.model_dump(mode="json"), status_code=400 if report.rejected_all else 200)


def _money(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise bad_request("max_total_cost must be a decimal number of dollars", param="max_total_cost") from None
    if not amount.is_finite() or amount <= 0 or amount > Decimal("1e9"):
        raise bad_request("max_total_cost must be a positive number of dollars", param="max_total_cost")
    return amount


def _provider(value: str | None) -> ProviderPreferences | None:
    if value is None:
        return None
    try:
        return ProviderPreferences.model_validate_json(value)
    except ValueError as e:
        raise bad_request(f"provider must be an OpenRouter provider object as JSON ({e})", param="provider") from None


@router.get("/batches", response_model=BatchPage, summary="Batches, newest first")
async def list_batches(
    p: Who,
    gw: Gw,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BatchPage:
    if not p.admin and p.tenant is None:
        return BatchPage(data=[])
    rows = await gw.store.read(
        queries.batch_list(api_key_id=p.tenant, all_keys=p.admin, before_id=after, limit=limit + 1)
    )
    page = rows[:limit]
    data = [batch_view(r) for r in page]
    return BatchPage(
        data=data,
        first_id=page[0]["id"] if page else None,
        last_id=page[-1]["id"] if page else None,
        has_more=len(rows) > limit,
    )


@router.get(
    "/batches/{batch_id}",
    summary="A batch: counts, cost so far, estimated time left",
    description="Send `If-None-Match` with the last `ETag` to get 304 while nothing changed. `wait=N` "
    "(≤ 60 s) holds the request until the batch changes (or N seconds pass).",
    responses={304: {"description": "Not modified"}},
)
async def get_batch(
    batch_id: str,
    request: Request,
    p: Who,
    gw: Gw,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0.0,
) -> Response:
    row = await gw.batch_for(p, batch_id)
    tag = etag_for(row)
    seen = request.headers.get("if-none-match")
    if wait > 0 and not is_terminal(row) and (seen is None or etag_matches(seen, tag)):
        row = await gw.watcher.wait_change(batch_id, tag, wait) or row
        tag = etag_for(row)
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if etag_matches(seen, tag):
        return Response(status_code=304, headers=headers)
    return JSONResponse(batch_view(row, eta_s=gw.rates.eta(row)), headers=headers)


@router.get(
    "/batches/{batch_id}/results",
    summary="The batch's results as JSONL",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def batch_results(
    batch_id: str,
    p: Who,
    gw: Gw,
    state: Annotated[list[str] | None, Query(description="only jobs in these states")] = None,
) -> StreamingResponse:
    await gw.batch_for(p, batch_id)
    allowed = {s.value for s in JobState}
    bad = sorted(set(state or []) - allowed)
    if bad:
        raise bad_request(f"unknown state(s) {bad}; states: {', '.join(sorted(allowed))}", param="state")

    async def lines() -> AsyncIterator[str]:
        async for line in gw.producer.results(batch_id, states=state or None):
            yield next(iter_jsonl([line]))

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get(
    "/batches/{batch_id}/errors",
    summary="Lines refused at submission, as JSONL",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
async def batch_errors(batch_id: str, p: Who, gw: Gw) -> StreamingResponse:
    await gw.batch_for(p, batch_id)

    async def lines() -> AsyncIterator[str]:
        async for r in iter_rejections(gw.store, batch_id):
            yield (
                json.dumps(
                    {"line": r["line_no"], "custom_id": r["custom_id"], "code": r["code"], "message": r["message"]},
                    ensure_ascii=False,
                )
                + "\n"
            )

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/batches/{batch_id}/webhooks", summary="The batch's webhook deliveries and their tries")
async def batch_webhooks(batch_id: str, p: Who, gw: Gw) -> dict[str, Any]:
    await gw.batch_for(p, batch_id)
    return await deliveries_view(gw, batch_id=batch_id)


async def deliveries_view(gw: Gateway, **filters: Any) -> dict[str, Any]:
    rows = await gw.store.read(list_deliveries(**filters))
    tries = await gw.store.read(attempts_of([r["id"] for r in rows]))
    return {
        "object": "list",
        "data": [
            {
                **{k: v for k, v in r.items() if k not in ("payload", "dedupe_key")},
                "created_at": _iso(r["created_at"]),
                "updated_at": _iso(r["updated_at"]),
                "next_attempt_at": _iso(r["next_attempt_at"]),
                "attempts_log": [
                    {**{k: v for k, v in a.items() if k not in ("delivery_id",)}, "started_at": _iso(a["started_at"])}
                    for a in tries[r["id"]]
                ],
            }
            for r in rows
        ],
    }


@router.post("/batches/{batch_id}/cancel", summary="Cancel every queued or running job of a batch")
async def cancel_batch(batch_id: str, p: Who, gw: Gw) -> dict[str, Any]:
    row = await gw.batch_for(p, batch_id)
    return batch_view(await gw.cancel_batch(row))
