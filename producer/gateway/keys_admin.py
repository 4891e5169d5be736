"""Router API key management over HTTP, for admin principals — what `routeyard keys` does, under
`/v1/routeyard/admin/keys`. Shapes follow OpenRouter's key API where it has one (the token comes back once, as
`key`, on create and rotate); money is a decimal string.

    POST   /v1/routeyard/admin/keys                 create: name, environment, team, project, labels, expires_at,
                                                    allowed_classes|models|providers, limit, limit_reset,
                                                    include_byok_in_limit, admin  → {"data": key, "key": token}
    GET    /v1/routeyard/admin/keys                 `?team=&environment=&include_disabled=`
    GET    /v1/routeyard/admin/keys/{id}            the key and its current period (spend, remaining, resets_at)
    PATCH  /v1/routeyard/admin/keys/{id}            change name, team, project, labels, expiry, allowances, limit,
                                                    limit_reset, include_byok_in_limit, disabled (null clears)
    POST   /v1/routeyard/admin/keys/{id}/rotate     a new token; the old one stops working at once

Keys are never deleted (the ledger refers to them): disable one instead. Environment and admin scope are fixed
at creation. Jobs already submitted keep the team, project and environment they were recorded with.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from producer.gateway.auth import require_admin
from producer.gateway.errors import not_found
from producer.gateway.native import Gw
from producer.key_views import budget_json, key_json, resolve_allowances
from shared.auth import Principal
from shared.catalog import Catalog
from shared.keys import ApiKey, KeyStore
from shared.money import MAX_USD
from shared.spend import key_budget
from shared.timeutil import utcnow

log = logging.getLogger("routeyard.api")
Admin = Annotated[Principal, Depends(require_admin)]
router = APIRouter(prefix="/v1/routeyard/admin/keys", tags=["admin"], dependencies=[Depends(require_admin)])

_Names = list[Annotated[str, Field(min_length=1, max_length=128)]]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    environment: str = "dev"
    team: str | None = Field(default=None, max_length=64)
    project: str | None = Field(default=None, max_length=64)
    labels: _Names = Field(default_factory=list)
    expires_at: datetime | None = None
    allowed_classes: _Names = Field(default_factory=list)
    allowed_models: _Names = Field(default_factory=list)
    allowed_providers: _Names = Field(default_factory=list)
    limit: Decimal | None = Field(default=None, ge=0, le=MAX_USD, description="USD per period; null: unlimited")
    limit_reset: str = "none"
    include_byok_in_limit: bool = False
    admin: bool = False


class KeyUpdate(BaseModel):
    """Only the fields sent change; `null` clears an optional one (team, expiry, limit, an allowance)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=128)
    team: str | None = Field(default=None, max_length=64)
    project: str | None = Field(default=None, max_length=64)
    labels: _Names | None = None
    expires_at: datetime | None = None
    allowed_classes: _Names | None = None
    allowed_models: _Names | None = None
    allowed_providers: _Names | None = None
    limit: Decimal | None = Field(default=None, ge=0, le=MAX_USD)
    limit_reset: str | None = None
    include_byok_in_limit: bool | None = None
    disabled: bool | None = None


def _allowances(catalog: Catalog, sent: dict[str, Any]) -> dict[str, list[str] | None]:
    """The allowances among `sent`, checked against the catalog (models resolved to catalog ids)."""
    names = ("allowed_classes", "allowed_models", "allowed_providers")
    if not any(sent.get(n) for n in names):
        return {n: None for n in names if n in sent}
    classes, models, providers = resolve_allowances(
        catalog, sent.get(names[0]) or [], sent.get(names[1]) or [], sent.get(names[2]) or []
    )
    resolved = dict(zip(names, (classes, models, providers), strict=True))
    return {n: resolved[n] for n in names if n in sent}


async def _found(keys: KeyStore, key_id: str) -> ApiKey:
    key = await keys.get(key_id)
    if key is None:
        raise not_found("key", key_id)
    return key


@router.post("", status_code=201, summary="Create a router key (its token is returned once)")
async def create_key(body: KeyCreate, gw: Gw, who: Admin) -> dict[str, Any]:
    sent = body.model_dump()
    sent.update(_allowances(gw.catalog, sent))
    key, token = await KeyStore(gw.store).create(sent.pop("name"), **sent)
    log.info("admin %s created key %s (%s)", who.name, key.id, key.environment)
    return {"data": key_json(key, utcnow()), "key": token}


@router.get("", summary="List router keys")
async def list_keys(
    gw: Gw,
    team: Annotated[str | None, Query(max_length=64)] = None,
    environment: Annotated[str | None, Query(max_length=16)] = None,
    include_disabled: bool = True,
) -> dict[str, Any]:
    keys = await KeyStore(gw.store).list(team=team, environment=environment, include_disabled=include_disabled)
    now = utcnow()
    return {"data": [key_json(k, now) for k in keys]}


@router.get("/{key_id}", summary="A router key and its current period")
async def get_key(key_id: str, gw: Gw) -> dict[str, Any]:
    now = utcnow()
    budget = await gw.store.read(key_budget(key_id, now))
    if budget is None:
        raise not_found("key", key_id)
    return {"data": {**key_json(budget.key, now), "current_period": budget_json(budget)}}


@router.patch("/{key_id}", summary="Change a router key's settings, or disable / enable it")
async def update_key(key_id: str, body: KeyUpdate, gw: Gw, who: Admin) -> dict[str, Any]:
    keys = KeyStore(gw.store)
    await _found(keys, key_id)
    sent = body.model_dump(exclude_unset=True)
    sent.update(_allowances(gw.catalog, sent))
    updated = await keys.update(key_id, sent)
    if updated is None:
        raise not_found("key", key_id)
    log.info("admin %s changed key %s: %s", who.name, key_id, ", ".join(sorted(sent)))
    return {"data": key_json(updated, utcnow())}


@router.post("/{key_id}/rotate", summary="A new token for the key; the old one stops working at once")
async def rotate_key(key_id: str, gw: Gw, who: Admin) -> dict[str, Any]:
    rotated = await KeyStore(gw.store).rotate(key_id)
    if rotated is None:
        raise not_found("key", key_id)
    log.info("admin %s rotated key %s", who.name, key_id)
    key, token = rotated
    return {"data": key_json(key, utcnow()), "key": token}
