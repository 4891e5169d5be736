"""The admin API for operations and reporting, as a FastAPI router the gateway mounts:

    app.include_router(ops_router(lambda: store, require_admin, queue_factory=..., catalog_factory=...))
    app.add_api_route("/metrics", metrics_endpoint(registry, refresh=queue_metrics.refresh))

Routes (every one behind `require_admin`, the gateway's dependency that rejects non-admin callers):

    GET  /api/v1/activity                 OpenRouter's activity shape: the last 30 completed UTC days by day,
                                          model and endpoint; `?date=YYYY-MM-DD`, `?key=<router key id>`,
                                          `?api_key_hash=<sha256 of the token>` (as OpenRouter filters)
    GET  /admin/reports/usage             `routeyard report` as JSON (or `?format=csv`)
    GET  /admin/reports/reconciliation    per provider key and day, for invoices
    GET  /admin/reports/chart             the spend-over-time chart (self-contained HTML)
    GET  /admin/failures                  dead letters, with the matching requeue request
    POST /admin/requeue                   re-queue by filter (`"dry_run": true` to preview)
    POST /admin/cancel                    cancel jobs or a batch

Money in routeyard's own responses is a decimal string (exact); the activity endpoint sends numbers because
OpenRouter does (with the exact strings beside them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Connection, select

from shared.catalog import Catalog
from shared.errors import InputError
from shared.queue import JobQueue
from shared.reports import DIMENSIONS, Where, activity, reconciliation, usage_report
from shared.store import Store, queries
from shared.store.selection import JobFilter
from shared.tables_keys import RouterKey
from shared.timeutil import utcnow

api_keys = RouterKey.__table__  # type: ignore[attr-defined]
ACTIVITY_DAYS = 30


def _when(text: str | None, default: datetime | None = None) -> datetime | None:
    if text is None:
        return default
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"{text!r} is not a date (YYYY-MM-DD) or an ISO time") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _error(code: int, message: str) -> JSONResponse:
    """OpenRouter's error shape."""
    return JSONResponse({"error": {"code": code, "message": message, "metadata": None}}, status_code=code)


class RequeueBody(BaseModel):
    job_ids: list[str] = Field(default_factory=list)
    batch_id: str | None = None
    states: list[str] = Field(default_factory=lambda: ["failed"])
    error_classes: list[str] = Field(default_factory=list)
    provider: str | None = None
    model: str | None = None
    key: str | None = None
    since: str | None = None
    until: str | None = None
    class_name: str | None = Field(default=None, alias="class")
    models: list[str] | None = None
    provider_ignore: list[str] | None = None
    dry_run: bool = False


class CancelBody(BaseModel):
    job_ids: list[str] = Field(default_factory=list)
    batch_id: str | None = None


def _filter(
    states: list[str],
    batch_id: str | None,
    error_classes: list[str],
    provider: str | None,
    model: str | None,
    key: str | None,
    since: str | None,
    until: str | None,
    job_ids: list[str] | None = None,
) -> JobFilter:
    try:
        return JobFilter.parse(
            states=states, batch_id=batch_id, error_classes=error_classes, provider=provider, model=model,
            api_key_id=key, since=since, until=until, job_ids=job_ids,
        )  # fmt: skip
    except InputError as e:
        raise HTTPException(400, e.message) from None


def _key_by_hash(token_hash: str) -> Callable[[Connection], str | None]:
    def q(conn: Connection) -> str | None:
        found: str | None = conn.execute(select(api_keys.c.id).where(api_keys.c.secret_hash == token_hash)).scalar()
        return found

    return q


def ops_router(
    store_factory: Callable[[], Store],
    require_admin: Callable[..., Any],
    *,
    queue_factory: Callable[[], JobQueue] | None = None,
    catalog_factory: Callable[[], Catalog] | None = None,
) -> APIRouter:
    """The admin routes. `store_factory`, `queue_factory` and `catalog_factory` return the gateway's shared
    objects (called per request, never closed here); without a queue, `/admin/requeue` answers dry runs only."""
    router = APIRouter(dependencies=[Depends(require_admin)], tags=["admin"])

    @router.get("/api/v1/activity")
    async def get_activity(
        date_: str | None = Query(None, alias="date", description="one UTC day in the last 30 (YYYY-MM-DD)"),
        key: str | None = Query(None, description="router key id"),
        api_key_hash: str | None = Query(None, description="SHA-256 (hex) of a router key's token"),
    ) -> Response:
        today = datetime.combine(utcnow().date(), datetime.min.time(), UTC)
        since, until = today - timedelta(days=ACTIVITY_DAYS), today
        if date_ is not None:
            try:
                day = datetime.combine(date.fromisoformat(date_), datetime.min.time(), UTC)
            except ValueError:
                return _error(400, "Invalid date format or date range")
            if not since <= day < until:
                return _error(400, "Invalid date format or date range")
            since, until = day, day + timedelta(days=1)
        store = store_factory()
        if api_key_hash is not None:
            found = await store.read(_key_by_hash(api_key_hash.lower()))
            if found is None or (key is not None and key != found):
                return JSONResponse({"data": []})
            key = found
        return JSONResponse({"data": await store.read(activity(since, until, key))})

    @router.get("/admin/reports/usage")
    async def get_usage(
        by: Annotated[list[str] | None, Query()] = None,
        since: str | None = None,
        until: str | None = None,
        key: str | None = None,
        team: str | None = None,
        project: str | None = None,
        environment: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        batch: str | None = None,
        class_name: str | None = Query(None, alias="class"),
        format: str = "json",
    ) -> Response:
        by = by or ["provider"]
        bad = [d for d in by if d not in DIMENSIONS]
        if bad:
            raise HTTPException(400, f"by: choose among {', '.join(DIMENSIONS)}")
        start = _when(since, utcnow() - timedelta(days=30))
        end = _when(until)
        where = Where(key, team, project, environment, provider, model, batch, class_name)
        report = await store_factory().read(usage_report(tuple(by), start, end, where))
        if format == "csv":
            import csv
            import io

            out = io.StringIO()
            rows = [r.to_json() for r in report.rows]
            if rows:
                writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
            return Response(out.getvalue(), media_type="text/csv")
        return JSONResponse(report.to_json())

    @router.get("/admin/reports/reconciliation")
    async def get_reconciliation(
        since: str | None = None, until: str | None = None, provider: str | None = None
    ) -> Response:
        start = _when(since, utcnow() - timedelta(days=30))
        rows = await store_factory().read(reconciliation(start, _when(until), provider))
        return JSONResponse({"data": [r.to_json() for r in rows]})

    @router.get("/admin/reports/chart", response_class=HTMLResponse)
    async def get_chart(
        by: str = "provider", since: str | None = None, until: str | None = None, key: str | None = None
    ) -> HTMLResponse:
        from producer.chart import render_html

        if by not in DIMENSIONS:
            raise HTTPException(400, f"by: choose among {', '.join(DIMENSIONS)}")
        start = _when(since, utcnow() - timedelta(days=30))
        end = _when(until, utcnow())
        dims = ("day",) if by == "day" else ("day", by)
        report = await store_factory().read(usage_report(dims, start, end, Where(key=key)))
        return HTMLResponse(render_html(report, by, title="routeyard spend by day"))

    @router.get("/admin/failures")
    async def get_failures(
        batch: str | None = None,
        state: Annotated[list[str] | None, Query()] = None,
        error_class: Annotated[list[str] | None, Query()] = None,
        provider: str | None = None,
        model: str | None = None,
        key: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Response:
        flt = _filter(state or ["failed"], batch, error_class or [], provider, model, key, since, until)
        groups = await store_factory().read(queries.failures(where=flt))
        data = []
        for g in groups:
            data.append(
                {
                    "error_class": g.error_class,
                    "provider": g.provider,
                    "model": g.model,
                    "count": g.count,
                    "http_status": {str(k): v for k, v in g.http_status.items()},
                    "samples": g.samples,
                    "job_ids": g.job_ids,
                    "requeue": {  # POST this to /admin/requeue to take the group
                        "batch_id": flt.batch_id,
                        "states": list(flt.states),
                        "error_classes": [g.error_class] if g.error_class else list(flt.error_classes),
                        "provider": g.provider or flt.provider,
                        "model": g.model or flt.model,
                        "key": flt.api_key_id,
                        "since": since,
                        "until": until,
                        "dry_run": True,
                    },
                }
            )
        return JSONResponse({"data": data})

    @router.post("/admin/requeue")
    async def post_requeue(body: RequeueBody) -> Response:
        from producer.requeue import Rewrite, requeue

        flt = _filter(
            body.states,
            body.batch_id,
            body.error_classes,
            body.provider,
            body.model,
            body.key,
            body.since,
            body.until,
            body.job_ids,
        )
        if catalog_factory is None:
            raise HTTPException(503, "no catalog configured for re-queue")
        queue = queue_factory() if queue_factory is not None else None
        if queue is None and not body.dry_run:
            raise HTTPException(503, "no queue configured: only dry runs are possible")
        rewrite = Rewrite(
            class_name=body.class_name,
            models=tuple(body.models) if body.models is not None else None,
            provider_ignore=tuple(body.provider_ignore) if body.provider_ignore is not None else None,
        )
        report = await requeue(
            store_factory(), queue, flt, catalog=catalog_factory(), rewrite=rewrite, dry_run=body.dry_run
        )
        return JSONResponse(report.to_json(), status_code=422 if report.errors else 200)

    @router.post("/admin/cancel")
    async def post_cancel(body: CancelBody) -> Response:
        from producer.requeue import cancel

        if bool(body.job_ids) == (body.batch_id is not None):
            raise HTTPException(400, "give job_ids or batch_id")
        n = await cancel(store_factory(), job_ids=body.job_ids or None, batch_id=body.batch_id)
        return JSONResponse({"cancelled": n})

    return router


def metrics_endpoint(registry: Any, refresh: Callable[[], Awaitable[None]] | None = None) -> Callable[..., Any]:
    """An endpoint serving the Prometheus exposition of `registry` (e.g. a `worker.metrics.QueueMetrics`
    registered on one): `app.add_api_route("/metrics", metrics_endpoint(registry, refresh=qm.refresh))`.
    `refresh` runs first (queue depth and circuits are read from Redis at scrape time)."""
    from worker.metrics import exposition

    async def endpoint() -> Response:
        if refresh is not None:
            await refresh()
        body, content_type = exposition(registry)
        return Response(body, media_type=content_type)

    return endpoint


__all__ = ["RequeueBody", "metrics_endpoint", "ops_router"]
