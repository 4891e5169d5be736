"""Router key management over HTTP (`/v1/routeyard/admin/keys`): an admin creates, lists, shows, changes,
disables and rotates keys; the tokens it hands out authenticate at once and stop at once; non-admins are
refused; bad input is a clear 400; tokens are never stored or listed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from gw_helpers import auth
from ry_helpers import make_config
from sqlalchemy import select

from producer.gateway import create_app
from shared.crypto import load_box
from shared.settings import Settings
from shared.store import Store
from shared.tables_keys import RouterKey

ADMIN_TOKEN = "bootstrap-admin-token-0123"
KEYS = "/v1/routeyard/admin/keys"


@pytest.fixture
async def client(
    settings: Settings, store: Store, fake_redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("ROUTEYARD_ADMIN_TOKEN", ADMIN_TOKEN)
    app = create_app(settings, make_config(), store=store, redis=fake_redis, box=load_box(settings.home))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


async def _create(c: httpx.AsyncClient, **body: Any) -> tuple[dict[str, Any], str]:
    r = await c.post(KEYS, json={"name": "nightly-evals", **body}, headers=auth(ADMIN_TOKEN))
    assert r.status_code == 201, r.text
    return r.json()["data"], r.json()["key"]


async def test_an_admin_manages_keys_and_their_tokens_work_at_once(client: httpx.AsyncClient, store: Store) -> None:
    c = client
    key, token = await _create(
        c,
        environment="prod",
        team="ml",
        project="evals",
        labels=["batch"],
        limit="5.50",
        limit_reset="monthly",
        allowed_classes=["basic"],
        allowed_models=["small"],
    )
    assert key["state"] == "active" and Decimal(key["limit"]) == Decimal("5.50") and key["limit_reset"] == "monthly"
    assert (key["team"], key["environment"], key["allowed_models"]) == ("ml", "prod", ["small"])
    # the new token submits work straight away
    r = await c.post("/v1/routeyard/jobs", json={"prompt": "hi"}, headers=auth(token))
    assert r.status_code == 200, r.text

    listed = await c.get(KEYS, params={"team": "ml"}, headers=auth(ADMIN_TOKEN))
    assert [k["id"] for k in listed.json()["data"]] == [key["id"]]
    shown = (await c.get(f"{KEYS}/{key['id']}", headers=auth(ADMIN_TOKEN))).json()["data"]
    period = shown["current_period"]
    assert Decimal(period["limit"]) == Decimal(period["remaining"]) == Decimal("5.50")
    assert period["resets_at"] is not None
    # neither the token nor its hash ever leaves the store, and only the hash is in it
    assert token not in listed.text + json.dumps(shown)
    rows = await store.read(lambda conn: [dict(r) for r in conn.execute(select(RouterKey.__table__)).mappings()])  # type: ignore[attr-defined]
    assert token not in json.dumps(rows, default=str)
    assert all(r["secret_hash"] not in listed.text + json.dumps(shown) for r in rows)

    # change the limit and the team; clear the model allowance; then disable: the token stops at once
    r = await c.patch(
        f"{KEYS}/{key['id']}",
        json={"limit": "20", "team": "research", "allowed_models": None},
        headers=auth(ADMIN_TOKEN),
    )
    assert r.status_code == 200, r.text
    changed = r.json()["data"]
    assert (Decimal(changed["limit"]), changed["team"], changed["allowed_models"]) == (20, "research", None)
    assert changed["allowed_classes"] == ["basic"] and changed["project"] == "evals"  # untouched fields stay
    r = await c.patch(f"{KEYS}/{key['id']}", json={"disabled": True}, headers=auth(ADMIN_TOKEN))
    assert r.json()["data"]["state"] == "disabled"
    assert (await c.post("/v1/routeyard/jobs", json={"prompt": "hi"}, headers=auth(token))).status_code == 401
    r = await c.patch(f"{KEYS}/{key['id']}", json={"disabled": False}, headers=auth(ADMIN_TOKEN))
    assert r.json()["data"]["state"] == "active"

    # rotate: the old token stops, the new one works
    r = await c.post(f"{KEYS}/{key['id']}/rotate", headers=auth(ADMIN_TOKEN))
    assert r.status_code == 200 and r.json()["data"]["rotated_at"] is not None
    new_token = r.json()["key"]
    assert new_token != token
    assert (await c.post("/v1/routeyard/jobs", json={"prompt": "hi"}, headers=auth(token))).status_code == 401
    assert (await c.post("/v1/routeyard/jobs", json={"prompt": "hi"}, headers=auth(new_token))).status_code == 200


async def test_only_admins_manage_keys(client: httpx.AsyncClient) -> None:
    c = client
    key, token = await _create(c)
    admin, admin_token = await _create(c, admin=True)
    assert (await c.get(KEYS, headers=auth(token))).status_code == 403
    assert (await c.post(KEYS, json={"name": "mine"}, headers=auth(token))).status_code == 403
    assert (await c.patch(f"{KEYS}/{key['id']}", json={"limit": "1"}, headers=auth(token))).status_code == 403
    assert (await c.post(f"{KEYS}/{key['id']}/rotate", headers=auth(token))).status_code == 403
    assert (await c.get(KEYS)).status_code == 401
    # an admin key made over HTTP is itself an admin
    assert (await c.get(KEYS, headers=auth(admin_token))).status_code == 200 and admin["admin"] is True


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"environment": "moon"}, "environment must be one of"),
        ({"limit_reset": "hourly"}, "limit reset must be one of"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "1e30"}, "less than or equal to 1000000000"),  # would overflow the nano-dollar column
        ({"limit": "NaN"}, "limit"),
        ({"allowed_models": ["no-such-model"], "allowed_classes": ["nope"]}, "unknown class 'nope'"),
        ({"expires_at": "2030-01-01T00:00:00"}, "timezone"),
        ({"secret_hash": "x"}, "secret_hash"),
    ],
)
async def test_bad_key_settings_are_a_clear_400(client: httpx.AsyncClient, body: dict[str, Any], needle: str) -> None:
    r = await client.post(KEYS, json={"name": "k", **body}, headers=auth(ADMIN_TOKEN))
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"], r.text


async def test_changing_an_unknown_key_or_a_fixed_field_is_refused(client: httpx.AsyncClient) -> None:
    c = client
    key, _ = await _create(c)
    for method, path in (("GET", ""), ("PATCH", ""), ("POST", "/rotate")):
        r = await c.request(
            method, f"{KEYS}/key_missing{path}", json={} if method == "PATCH" else None, headers=auth(ADMIN_TOKEN)
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "key_not_found", (method, r.text)
    for body in ({"environment": "prod"}, {"admin": True}, {"name": None}, {"limit_reset": None}):
        r = await c.patch(f"{KEYS}/{key['id']}", json=body, headers=auth(ADMIN_TOKEN))
        assert r.status_code == 400, (body, r.text)
