"""The HTTP gateway: an app factory, so tests (and embedders) inject the store, Redis and authenticator.

    create_app(settings, config, store=..., redis=..., authenticator=...)

Whatever is not injected is built at startup from the settings (DATABASE_URL, REDIS_URL, the master key)
and closed at shutdown. Routes: `producer.gateway.native` (routeyard's API), `producer.gateway.openai_api`
(OpenAI Batch and Files), `producer.gateway.admin` (admin principals); `/healthz` answers without auth;
the OpenAPI spec is at `/openapi.json`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from arq.connections import ArqRedis
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from producer.gateway import admin, keys_admin, native, openai_api
from producer.gateway.errors import ApiError, install_handlers
from producer.gateway.service import MAX_UPLOAD_BYTES, Gateway
from shared.auth import Authenticator
from shared.config import RouteyardConfig, load_config
from shared.crypto import SecretBox, load_box
from shared.settings import Settings
from shared.store import Store

DESCRIPTION = """A durable batch job router for LLM inference.

* **routeyard API** (`/v1/routeyard/...`): submit jobs and batches with classes, priorities, budgets, routing
  preferences and signed webhooks; poll with ETags and long polls; stream results.
* **OpenAI-compatible** (`/v1/files`, `/v1/batches`): the official SDKs work unchanged.

Authenticate with `Authorization: Bearer KEY`. A key sees only its own batches, jobs and files.
"""


class BodyLimit:
    """Refuse a request whose declared body is over the upload limit before reading a byte of it (413)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                    body = ApiError(413, f"The request is larger than {self.limit} bytes.", code="upload_too_large")
                    await JSONResponse(body.body(), status_code=413)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _mount_ops(app: FastAPI) -> None:
    """The operators' endpoints (reports, activity, failures, re-queue) and Prometheus metrics: queue depth
    per priority and open circuits, read from Redis when scraped."""
    from prometheus_client import CollectorRegistry

    from producer.gateway.auth import require_admin
    from producer.gateway_ops import metrics_endpoint, ops_router
    from worker.metrics import QueueMetrics

    def gateway() -> Gateway:
        return app.state.gateway  # type: ignore[no-any-return]

    app.include_router(
        ops_router(
            lambda: gateway().store,
            require_admin,
            queue_factory=lambda: gateway().queue,
            catalog_factory=lambda: gateway().catalog,
        )
    )
    registry = CollectorRegistry()
    holder: dict[str, QueueMetrics] = {}

    async def refresh() -> None:
        if "qm" not in holder:
            holder["qm"] = QueueMetrics(gateway().queue)
            registry.register(holder["qm"])
        await holder["qm"].refresh()

    app.add_api_route(
        "/metrics", metrics_endpoint(registry, refresh=refresh), methods=["GET"], tags=["ops"], include_in_schema=False
    )


def create_app(
    settings: Settings,
    config: RouteyardConfig | None = None,
    *,
    store: Store | None = None,
    redis: ArqRedis | None = None,
    authenticator: Authenticator | None = None,
    box: SecretBox | None = None,
    extra_routers: Sequence[APIRouter] = (),
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
) -> FastAPI:
    conf = config or load_config()

    def build(s: Store, r: ArqRedis) -> Gateway:
        return Gateway(settings, conf, s, r, box or load_box(settings.home), max_upload_bytes=max_upload_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned: list[Any] = []
        if getattr(app.state, "gateway", None) is None:
            s = store or Store.open(settings.resolved_database_url())
            r = redis or ArqRedis.from_url(settings.redis_url)
            owned = [x for x, given in ((s, store), (r, redis)) if given is None]
            app.state.gateway = build(s, r)
        if app.state.authenticator is None:
            from producer.gateway.auth import default_authenticator

            app.state.authenticator = default_authenticator(app.state.gateway.store)
        try:
            yield
        finally:
            await app.state.gateway.aclose()
            for thing in owned:
                await (thing.close() if isinstance(thing, Store) else thing.aclose())

    app = FastAPI(title="routeyard", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.authenticator = authenticator
    if store is not None and redis is not None:  # everything injected: ready without a lifespan (ASGI tests)
        app.state.gateway = build(store, redis)
        if authenticator is None:
            from producer.gateway.auth import default_authenticator

            app.state.authenticator = default_authenticator(store)
    install_handlers(app)
    app.add_middleware(BodyLimit, limit=max_upload_bytes + 64 * 1024)  # + room for multipart framing
    app.include_router(native.router)
    app.include_router(openai_api.router)
    app.include_router(admin.admin_router)
    app.include_router(keys_admin.router)
    _mount_ops(app)
    for extra in extra_routers:
        app.include_router(extra)

    @app.get("/healthz", tags=["ops"], summary="Liveness (no auth)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
