"""The HTTP gateway in process (httpx over ASGI, an embedded worker): routeyard's own API, polling with
ETags and long polls, uploads with line errors, cancellation, and tenant isolation (another tenant's ids
answer 404 — for jobs, batches and files alike)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from gw_helpers import ADMIN, ALICE, BOB, FakeAuth, auth, seed_tenant_keys
from ry_helpers import make_config, quiet_farm

from producer.embedded import Embedded
from producer.gateway import create_app
from producer.gateway.lines import lines_from_chunks
from producer.ingest import Line, LineError
from shared.crypto import load_box
from shared.settings import Settings
from shared.store import Store


@pytest.fixture
async def gw(
    request: pytest.FixtureRequest, settings: Settings, fake_redis: ArqRedis, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Embedded]]:
    """The gateway and a worker on one store and one (fake) Redis: SQLite, or PostgreSQL for the tests
    parametrized `indirect` (files, uploads and tenancy run on both)."""
    kind = getattr(request, "param", "sqlite")
    url = request.getfixturevalue("pg_url") if kind == "postgres" else f"sqlite:///{tmp_path / 'routeyard.db'}"
    store = Store.open(url)
    config = make_config()
    seed_tenant_keys(store)
    app = create_app(
        settings, config, store=store, redis=fake_redis, authenticator=FakeAuth(), box=load_box(settings.home)
    )
    try:
        async with (
            Embedded(settings, config, farm=quiet_farm(), redis=fake_redis, store=store) as emb,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
        ):
            yield client, emb
    finally:
        await store.close()


BOTH_STORES = pytest.mark.parametrize("gw", ["sqlite", "postgres"], indirect=True)


async def _done(c: httpx.AsyncClient, batch_id: str, token: str = ALICE) -> dict[str, Any]:
    for _ in range(100):
        r = await c.get(f"/v1/routeyard/batches/{batch_id}", params={"wait": 5}, headers=auth(token))
        if r.json()["state"] in ("completed", "cancelled"):
            return r.json()  # type: ignore[no-any-return]
    raise TimeoutError(batch_id)


async def test_auth_is_required(gw: tuple[httpx.AsyncClient, Embedded]) -> None:
    c, _ = gw
    r = await c.get("/v1/routeyard/batches")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    r = await c.get("/v1/batches", headers=auth("tok-nobody-0123456789"))
    assert r.status_code == 401 and "tok-nobody" not in r.text
    assert (await c.get("/healthz")).json() == {"status": "ok"}
    r = await c.get("/v1/routeyard/admin/webhooks/deliveries", headers=auth(ALICE))
    assert r.status_code == 403
    assert (await c.get("/v1/routeyard/admin/webhooks/deliveries", headers=auth(ADMIN))).status_code == 200


async def test_one_job_end_to_end(gw: tuple[httpx.AsyncClient, Embedded]) -> None:
    c, _ = gw
    r = await c.post(
        "/v1/routeyard/jobs",
        json={"prompt": "hello", "class": "basic", "priority": "high", "max_cost": "0.01", "custom_id": "one"},
        headers=auth(ALICE),
    )
    assert r.status_code == 200, r.text
    job_id, batch_id = r.json()["job_id"], r.json()["batch_id"]
    await _done(c, batch_id)
    job = (await c.get(f"/v1/routeyard/jobs/{job_id}", headers=auth(ALICE))).json()
    assert job["state"] == "succeeded" and job["custom_id"] == "one" and job["priority"] == "high"
    assert job["response"]["body"]["choices"][0]["message"]["content"]
    assert float(job["cost"]) > 0 and len(job["attempt_log"]) == job["attempts"] == 1
    assert job["attempt_log"][0]["status"] == "succeeded"
    # a job that can never run is refused at submission, saying why
    r = await c.post("/v1/routeyard/jobs", json={"prompt": "x", "class": "nope"}, headers=auth(ALICE))
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_class"
    r = await c.post("/v1/routeyard/jobs", json={"prompt": "x", "messages": []}, headers=auth(ALICE))
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


async def test_json_batch_with_options_and_line_errors(gw: tuple[httpx.AsyncClient, Embedded]) -> None:
    c, emb = gw
    jobs = [{"custom_id": f"c{i}", "prompt": f"q{i}"} for i in range(5)] + [{"custom_id": "bad"}]
    r = await c.post(
        "/v1/routeyard/batches",
        json={
            "jobs": jobs,
            "class": "basic",
            "priority": "low",
            "max_total_cost": "1.5",
            "models": ["big"],
            "provider": {"only": ["gamma"]},
            "metadata": {"team": "search"},
        },
        headers=auth(ALICE),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (5, 1)
    assert body["errors"] == [
        {"line": 6, "custom_id": "bad", "code": "invalid_request", "message": body["errors"][0]["message"]}
    ]
    b = await _done(c, body["batch_id"])
    assert b["counts"] == {"total": 5, "succeeded": 5, "failed": 0, "cancelled": 0, "active": 0, "rejected": 1}
    assert b["priority"] == "low" and b["max_total_cost"] == "1.5" and b["metadata"] == {"team": "search"}
    assert float(b["cost_total"]) > 0 and b["eta_seconds"] == 0.0
    lines = (await c.get(f"/v1/routeyard/batches/{body['batch_id']}/results", headers=auth(ALICE))).text.splitlines()
    assert {json.loads(x)["provider"] for x in lines} == {"gamma"}  # the batch's routing preferences applied
    errors = (await c.get(f"/v1/routeyard/batches/{body['batch_id']}/errors", headers=auth(ALICE))).text
    assert json.loads(errors)["line"] == 6
    # a bare JSON array works too; strict rejects everything on one bad line
    r = await c.post("/v1/routeyard/batches", json=[{"prompt": "a"}, {"prompt": "b"}], headers=auth(ALICE))
    assert r.json()["accepted"] == 2
    r = await c.post("/v1/routeyard/batches", json={"jobs": jobs, "strict": True}, headers=auth(ALICE))
    assert r.status_code == 400 and r.json()["rejected_all"] and r.json()["batch_id"] is None
    assert r.json()["errors"][0]["line"] == 6


@BOTH_STORES
async def test_upload_polling_etag_and_results_filter(gw: tuple[httpx.AsyncClient, Embedded]) -> None:
    c, emb = gw
    emb.farm.set_behaviour("alpha", down=True)
    emb.farm.set_behaviour("beta", down=True)
    emb.farm.set_behaviour("gamma", down=True)
    text = "".join(json.dumps({"custom_id": f"u{i}", "prompt": f"q{i}"}) + "\n" for i in range(4))
    text += "{not json\n\n" + json.dumps({"custom_id": "u9", "prompt": "last", "class": "bigonly"})  # no final newline
    r = await c.post(
        "/v1/routeyard/batches/upload",
        content=text.encode(),
        params={"class": "basic", "priority": "high"},
        headers={**auth(BOB), "content-type": "application/jsonl"},
    )
    assert r.status_code == 200, r.text
    batch_id = r.json()["batch_id"]
    assert (r.json()["accepted"], r.json()["rejected"]) == (5, 1) and r.json()["errors"][0]["line"] == 5
    first = await c.get(f"/v1/routeyard/batches/{batch_id}", headers=auth(BOB))
    etag = first.headers["etag"]
    # while every provider is down nothing moves: a conditional poll is a 304 and a long poll waits it out
    if first.json()["state"] == "open":
        r = await c.get(f"/v1/routeyard/batches/{batch_id}", headers={**auth(BOB), "if-none-match": etag})
        assert r.status_code in (200, 304)
    for p in ("alpha", "beta", "gamma"):
        emb.farm.set_behaviour(p, down=False)
    b = await _done(c, batch_id, BOB)
    final = await c.get(f"/v1/routeyard/batches/{batch_id}", headers=auth(BOB))
    assert final.status_code == 200 and final.headers["etag"] != etag
    r = await c.get(f"/v1/routeyard/batches/{batch_id}", headers={**auth(BOB), "if-none-match": final.headers["etag"]})
    assert r.status_code == 304 and r.content == b""
    # long poll on a finished batch returns at once (nothing more will change)
    r = await c.get(
        f"/v1/routeyard/batches/{batch_id}",
        params={"wait": 30},
        headers={**auth(BOB), "if-none-match": final.headers["etag"]},
    )
    assert r.status_code == 304
    ok = (
        await c.get(f"/v1/routeyard/batches/{batch_id}/results", params={"state": "succeeded"}, headers=auth(BOB))
    ).text
    failed = (
        await c.get(f"/v1/routeyard/batches/{batch_id}/results", params={"state": "failed"}, headers=auth(BOB))
    ).text
    assert len(ok.splitlines()) == b["counts"]["succeeded"] and len(failed.splitlines()) == b["counts"]["failed"]
    assert b["counts"]["succeeded"] + b["counts"]["failed"] == 5
    r = await c.get(f"/v1/routeyard/batches/{batch_id}/results", params={"state": "weird"}, headers=auth(BOB))
    assert r.status_code == 400
    # multipart works as well
    r = await c.post(
        "/v1/routeyard/batches/upload", files={"file": ("x.jsonl", b'{"prompt": "hi"}\n')}, headers=auth(BOB)
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1


async def test_long_poll_returns_when_the_batch_changes(gw: tuple[httpx.AsyncClient, Embedded]) -> None:
    c, emb = gw
    await emb.worker.drain(0)  # no worker: the batch stays queued until we cancel it
    r = await c.post("/v1/routeyard/batches", json=[{"prompt": f"q{i}"} for i in range(3)], headers=auth(ALICE))
    batch_id = r.json()["batch_id"]
    first = await c.get(f"/v1/routeyard/batches/{batch_id}", headers=auth(ALICE))
    assert first.json()["counts"]["active"] == 3 and first.json()["eta_seconds"] is None

    async def cancel_soon() -> None:
        await asyncio.sleep(0.3)
        r = await c.post(f"/v1/routeyard/batches/{batch_id}/cancel", headers=auth(ALICE))
        assert r.json()["state"] == "cancelled"

    canceller = asyncio.create_task(cancel_soon())
    r = await c.get(
        f"/v1/routeyard/batches/{batch_id}",
        params={"wait": 30},
        headers={**auth(ALICE), "if-none-match": first.headers["etag"]},
    )
    await canceller
    assert r.status_code == 200 and r.json()["state"] == "cancelled" and r.json()["counts"]["cancelled"] == 3


async def test_cancel_a_job(gw: tuple[httpx.AsyncClient, Embedded]) -> None:
    c, emb = gw
    await emb.worker.drain(0)
    r = await c.post("/v1/routeyard/jobs", json={"prompt": "wait"}, headers=auth(ALICE))
    job_id = r.json()["job_id"]
    assert (await c.post(f"/v1/routeyard/jobs/{job_id}/cancel", headers=auth(BOB))).status_code == 404
    r = await c.post(f"/v1/routeyard/jobs/{job_id}/cancel", headers=auth(ALICE))
    assert r.json()["state"] == "cancelled"
    b = (await c.get(f"/v1/routeyard/batches/{r.json()['batch_id']}", headers=auth(ALICE))).json()
    assert b["state"] == "completed" and b["counts"]["cancelled"] == 1


@BOTH_STORES
async def test_tenants_see_only_their_own(gw: tuple[httpx.AsyncClient, Embedded]) -> None:
    c, _ = gw
    r = await c.post("/v1/routeyard/jobs", json={"prompt": "mine"}, headers=auth(ALICE))
    job_id, batch_id = r.json()["job_id"], r.json()["batch_id"]
    f = await c.post(
        "/v1/files", files={"file": ("in.jsonl", b'{"prompt": "x"}\n')}, data={"purpose": "batch"}, headers=auth(ALICE)
    )
    file_id = f.json()["id"]
    ob = await c.post(
        "/v1/batches",
        json={"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        headers=auth(ALICE),
    )
    assert ob.status_code == 200, ob.text
    await _done(c, batch_id)
    await _done(c, ob.json()["id"])
    out_id = (await c.get(f"/v1/batches/{ob.json()['id']}", headers=auth(ALICE))).json()["output_file_id"]
    assert out_id
    for method, path in [
        ("GET", f"/v1/routeyard/jobs/{job_id}"),
        ("POST", f"/v1/routeyard/jobs/{job_id}/cancel"),
        ("GET", f"/v1/routeyard/batches/{batch_id}"),
        ("GET", f"/v1/routeyard/batches/{batch_id}/results"),
        ("GET", f"/v1/routeyard/batches/{batch_id}/errors"),
        ("POST", f"/v1/routeyard/batches/{batch_id}/cancel"),
        ("GET", f"/v1/batches/{ob.json()['id']}"),
        ("POST", f"/v1/batches/{ob.json()['id']}/cancel"),
        ("GET", f"/v1/files/{file_id}"),
        ("GET", f"/v1/files/{file_id}/content"),
        ("DELETE", f"/v1/files/{file_id}"),
        ("GET", f"/v1/files/{out_id}"),
        ("GET", f"/v1/files/{out_id}/content"),
    ]:
        theirs = await c.request(method, path, headers=auth(BOB))
        assert theirs.status_code == 404, (method, path, theirs.status_code)
        missing = await c.request(method, path.replace("01", "09", 1), headers=auth(BOB))
        assert missing.status_code == 404 and set(theirs.json()["error"]) == set(missing.json()["error"])
        if method == "GET":
            assert (await c.request(method, path, headers=auth(ALICE))).status_code == 200, path
            assert (await c.request(method, path, headers=auth(ADMIN))).status_code == 200, path
    r = await c.post(
        "/v1/batches",
        json={"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        headers=auth(BOB),
    )
    assert r.status_code == 404  # cannot start a batch from another tenant's file
    assert (await c.get("/v1/routeyard/batches", headers=auth(BOB))).json()["data"] == []
    assert (await c.get("/v1/batches", headers=auth(BOB))).json()["data"] == []
    assert (await c.get("/v1/files", headers=auth(BOB))).json()["data"] == []
    mine = (await c.get("/v1/routeyard/batches", headers=auth(ALICE))).json()["data"]
    assert {b["id"] for b in mine} == {batch_id, ob.json()["id"]}
    every = (await c.get("/v1/routeyard/batches", headers=auth(ADMIN))).json()["data"]
    assert {b["id"] for b in every} >= {batch_id, ob.json()["id"]}


async def test_batch_listing_pages_newest_first(gw: tuple[httpx.AsyncClient, Embedded]) -> None:
    c, emb = gw
    await emb.worker.drain(0)
    ids = [
        (await c.post("/v1/routeyard/jobs", json={"prompt": f"{i}"}, headers=auth(ALICE))).json()["batch_id"]
        for i in range(5)
    ]
    seen: list[str] = []
    after = None
    while True:
        page = (
            await c.get("/v1/batches", params={"limit": 2, **({"after": after} if after else {})}, headers=auth(ALICE))
        ).json()
        seen += [b["id"] for b in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == list(reversed(ids))


def test_lines_split_across_chunks_and_overlong_lines() -> None:
    lines = [b'{"prompt": "one"}\n', b'{"prompt": "t', b'wo"}\n\n', b"x" * 50, b"\n", b'{"prompt": "last"}']
    out = list(lines_from_chunks(lines, max_line=40))
    assert [(type(x).__name__, x.line_no) for x in out] == [("Line", 1), ("Line", 2), ("LineError", 4), ("Line", 5)]
    assert isinstance(out[1], Line) and out[1].spec.prompt == "two"
    assert isinstance(out[2], LineError) and out[2].code == "too_long"
    one_chunk = b"".join(lines)
    assert [x.line_no for x in lines_from_chunks([one_chunk], max_line=40)] == [1, 2, 4, 5]


async def test_uploads_over_the_limit_are_refused(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    seed_tenant_keys(sqlite_store)
    app = create_app(
        settings, make_config(), store=sqlite_store, redis=fake_redis, authenticator=FakeAuth(),
        box=load_box(settings.home), max_upload_bytes=1000,
    )  # fmt: skip
    big = b'{"prompt": "x"}\n' * 200

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit is enforced while spooling
        for i in range(0, len(big), 100):
            yield big[i : i + 100]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        h = {**auth(ALICE), "content-type": "application/jsonl"}
        r = await c.post("/v1/routeyard/batches/upload", content=big, headers=h)
        assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
        r = await c.post("/v1/routeyard/batches/upload", content=chunked(), headers=h)
        assert r.status_code == 413
        r = await c.post("/v1/files", files={"file": ("x.jsonl", big)}, data={"purpose": "batch"}, headers=auth(ALICE))
        assert r.status_code == 413
        assert (await c.get("/v1/routeyard/batches", headers=auth(ALICE))).json()["data"] == []


async def test_parsing_runs_off_the_event_loop(
    gw: tuple[httpx.AsyncClient, Embedded], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import producer.gateway.lines as lines_module

    threads: set[str] = set()
    original = lines_module.parse_line

    def recording(raw: bytes, line_no: int) -> Any:
        threads.add(threading.current_thread().name)
        return original(raw, line_no)

    monkeypatch.setattr(lines_module, "parse_line", recording)
    c, _ = gw
    body = b"".join(json.dumps({"prompt": f"q{i}"}).encode() + b"\n" for i in range(2500))
    r = await c.post(
        "/v1/routeyard/batches/upload", content=body, headers={**auth(ALICE), "content-type": "application/jsonl"}
    )
    assert r.json()["accepted"] == 2500
    assert threads and threading.main_thread().name not in threads


async def test_the_api_authenticates_router_keys_from_the_store_and_the_admin_token(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`routeyard api` builds its app without an injected authenticator: real router keys (hashed in the key
    store) and, when ROUTEYARD_ADMIN_TOKEN is set, the bootstrap admin token."""
    from shared.keys import KeyStore

    monkeypatch.setenv("ROUTEYARD_ADMIN_TOKEN", "bootstrap-admin-token-0123")
    key, token = await KeyStore(sqlite_store).create("team-a")
    app = create_app(settings, make_config(), store=sqlite_store, redis=fake_redis, box=load_box(settings.home))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        r = await c.post("/v1/routeyard/jobs", json={"prompt": "hi"}, headers=auth(token))
        assert r.status_code == 200, r.text
        assert (await c.get("/v1/routeyard/batches", headers=auth("bootstrap-admin-token-0123"))).status_code == 200
        assert (await c.get("/v1/routeyard/batches", headers=auth("ry_live_not_a_real_token"))).status_code == 401
        # a key over its limit is refused with the limit, the spend and the reset time (402)
        capped, capped_token = await KeyStore(sqlite_store).create("capped", limit=Decimal(0))
        r = await c.post("/v1/routeyard/jobs", json={"prompt": "hi"}, headers=auth(capped_token))
        assert r.status_code == 402 and r.json()["error"]["code"] == "key_limit_exceeded", r.text
    assert key.id and capped.id


async def test_ops_endpoints_are_mounted_for_admins_and_metrics_are_served(
    gw: tuple[httpx.AsyncClient, Embedded],
) -> None:
    c, _ = gw
    r = await c.post("/v1/routeyard/jobs", json={"prompt": "hello"}, headers=auth(ALICE))
    assert r.status_code == 200, r.text
    assert (await c.get("/api/v1/activity", headers=auth(ALICE))).status_code == 403  # admins only
    activity = await c.get("/api/v1/activity", headers=auth(ADMIN))
    assert activity.status_code == 200 and "data" in activity.json()
    metrics = await c.get("/metrics")
    assert metrics.status_code == 200 and "routeyard_queue_jobs" in metrics.text
