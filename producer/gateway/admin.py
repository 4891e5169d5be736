"""Admin and operations routes, under `/v1/routeyard/admin` (admin principals only).

Router API key management has its own router (`producer.gateway.keys_admin`, `/v1/routeyard/admin/keys`);
other admin surfaces can add routes here or pass their own to `create_app(extra_routers=...)`.

    GET  /v1/routeyard/admin/webhooks/deliveries   `?batch_id=&status=&message_id=&limit=`, with every try
    POST /v1/routeyard/admin/webhooks/replay       {delivery_id | message_id | batch_id, only_failed}
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from producer.gateway.auth import require_admin
from producer.gateway.errors import bad_request
from producer.gateway.native import Gw, deliveries_view
from producer.gateway.schemas import ReplayRequest
from shared.webhook_store import replay_deliveries

admin_router = APIRouter(prefix="/v1/routeyard/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@admin_router.get("/webhooks/deliveries", summary="Webhook deliveries and their tries")
async def deliveries(
    gw: Gw,
    batch_id: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    message_id: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    return await deliveries_view(gw, batch_id=batch_id, status=status, message_id=message_id, limit=limit)


@admin_router.post("/webhooks/replay", summary="Send webhook messages again")
async def replay(body: ReplayRequest, gw: Gw) -> dict[str, Any]:
    if body.delivery_id is None and body.message_id is None and body.batch_id is None:
        raise bad_request("give delivery_id, message_id or batch_id")
    ids = await replay_deliveries(
        gw.store,
        gw.redis,
        gw.settings.redis_prefix,
        delivery_id=body.delivery_id,
        message_id=body.message_id,
        batch_id=body.batch_id,
        only_failed=body.only_failed,
    )
    return {"object": "list", "replayed": ids}
