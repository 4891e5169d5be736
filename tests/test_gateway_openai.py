"""The official `openai` SDK, unchanged, against the gateway served by uvicorn on a loopback port, with a
worker processing the batch over the simulated farm: upload, create, poll, read the output and error files.
Then the object shapes the SDK documents, checked field by field."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from gw_helpers import ALICE, BOB, FakeAuth, auth, seed_tenant_keys
from ry_helpers import free_port, make_config, quiet_farm, wait_for_http

from producer.embedded import Embedded
from producer.gateway import create_app
from shared.crypto import load_box
from shared.settings import Settings
from shared.store import Store


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/healthz")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _input_file(tmp_path: Path) -> Path:
    lines = [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "small", "messages": [{"role": "user", "content": f"Say {i}"}], "max_tokens": 50},
        }
        for i in range(6)
    ]
    # an unknown model and a broken line: refused with their line numbers, the rest run
    lines.insert(2, {**lines[0], "custom_id": "bad-model", "body": {**lines[0]["body"], "model": "nope"}})
    text = "\n".join(json.dumps(x) for x in lines) + "\n{broken\n"
    path = tmp_path / "batch.jsonl"
    path.write_text(text)
    return path


def _sdk_flow(base_url: str, path: Path) -> dict[str, Any]:
    """What a user of the SDK writes, verbatim."""
    import time

    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=base_url + "/v1", api_key=ALICE, max_retries=0)
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"project": "sdk-test", "routeyard_class": "basic", "routeyard_priority": "high"},
    )
    created_status = batch.status
    for _ in range(600):
        batch = client.batches.retrieve(batch.id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            break
        time.sleep(0.05)
    output = client.files.content(batch.output_file_id).text if batch.output_file_id else ""
    errors = client.files.content(batch.error_file_id).text if batch.error_file_id else ""
    listed = client.batches.list(limit=10)
    other = OpenAI(base_url=base_url + "/v1", api_key=BOB, max_retries=0)
    try:
        other.batches.retrieve(batch.id)
        hidden = False
    except NotFoundError:
        hidden = True
    return {
        "uploaded": uploaded,
        "file_again": client.files.retrieve(uploaded.id),
        "created_status": created_status,
        "batch": batch,
        "output": output,
        "errors": errors,
        "listed": [b.id for b in listed.data],
        "hidden_from_bob": hidden,
        "output_file": client.files.retrieve(batch.output_file_id) if batch.output_file_id else None,
    }


async def test_the_openai_sdk_works_unchanged(
    settings: Settings, sqlite_store: Store, real_redis: ArqRedis, tmp_path: Path
) -> None:
    config = make_config()
    box = load_box(settings.home)
    # the gateway builds its own Redis connection on uvicorn's event loop (settings.redis_url, same prefix)
    seed_tenant_keys(sqlite_store)
    app = create_app(settings, config, store=sqlite_store, authenticator=FakeAuth(), box=box)
    async with Embedded(settings, config, farm=quiet_farm(), redis=real_redis, store=sqlite_store):
        with serve(app) as url:
            got = await asyncio.to_thread(_sdk_flow, url, _input_file(tmp_path))
    batch = got["batch"]
    assert got["uploaded"].purpose == "batch" and got["uploaded"].bytes == (tmp_path / "batch.jsonl").stat().st_size
    assert got["file_again"].id == got["uploaded"].id
    assert got["created_status"] in ("in_progress", "completed")
    assert batch.status == "completed" and batch.endpoint == "/v1/chat/completions"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (8, 6, 2)
    assert batch.metadata == {"project": "sdk-test", "routeyard_class": "basic", "routeyard_priority": "high"}
    assert batch.completed_at is not None and batch.input_file_id == got["uploaded"].id
    assert batch.errors is not None and {(e.line, e.code) for e in batch.errors.data or []} == {
        (3, "unknown_model"),
        (8, "invalid_json"),
    }
    out = [json.loads(x) for x in got["output"].splitlines()]
    assert sorted(x["custom_id"] for x in out) == [f"req-{i}" for i in range(6)]
    for x in out:
        assert set(x) == {"id", "custom_id", "response", "error"} and x["error"] is None
        assert x["id"].startswith("batch_req_") and x["response"]["status_code"] == 200
        assert x["response"]["body"]["object"] == "chat.completion" and x["response"]["request_id"]
    errs = [json.loads(x) for x in got["errors"].splitlines()]
    assert [(x["custom_id"], x["error"]["code"], x["response"]) for x in errs] == [
        ("bad-model", "unknown_model", None),
        (None, "invalid_json", None),
    ]
    assert errs[0]["error"]["message"].startswith("line 3: ")
    assert got["output_file"].purpose == "batch_output" and got["output_file"].bytes == len(got["output"].encode())
    assert batch.id in got["listed"] and got["hidden_from_bob"]


@pytest.fixture
async def client(settings: Settings, sqlite_store: Store, fake_redis: ArqRedis) -> Any:
    seed_tenant_keys(sqlite_store)
    app = create_app(
        settings,
        make_config(),
        store=sqlite_store,
        redis=fake_redis,
        authenticator=FakeAuth(),
        box=load_box(settings.home),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


async def test_shapes_match_the_sdk_types(client: httpx.AsyncClient) -> None:
    from openai.types import Batch, FileDeleted, FileObject

    f = await client.post(
        "/v1/files",
        files={"file": ("in.jsonl", b'{"custom_id": "a", "prompt": "x"}\n')},
        data={"purpose": "batch"},
        headers=auth(ALICE),
    )
    FileObject.model_validate(f.json(), strict=False)
    assert set(f.json()) >= set(FileObject.model_fields) - {"expires_at", "status_details"}
    b = await client.post(
        "/v1/batches",
        json={"input_file_id": f.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        headers=auth(ALICE),
    )
    assert b.status_code == 200, b.text
    parsed = Batch.model_validate(b.json())
    assert parsed.status == "in_progress" and parsed.request_counts and parsed.request_counts.total == 1
    assert set(Batch.model_fields) <= set(b.json())  # every field the SDK knows is present (null when unset)
    content = await client.get(f"/v1/files/{f.json()['id']}/content", headers=auth(ALICE))
    assert content.content == b'{"custom_id": "a", "prompt": "x"}\n'
    cancelled = await client.post(f"/v1/batches/{b.json()['id']}/cancel", headers=auth(ALICE))
    assert Batch.model_validate(cancelled.json()).status == "cancelled" and cancelled.json()["cancelled_at"]
    err_file = cancelled.json()["error_file_id"]
    lines = (await client.get(f"/v1/files/{err_file}/content", headers=auth(ALICE))).text.splitlines()
    assert json.loads(lines[0])["error"]["code"] == "batch_cancelled"
    deleted = await client.delete(f"/v1/files/{f.json()['id']}", headers=auth(ALICE))
    assert FileDeleted.model_validate(deleted.json()).deleted
    assert (await client.get(f"/v1/files/{f.json()['id']}", headers=auth(ALICE))).status_code == 404
    # errors in OpenAI's shape, so the SDK raises its usual exceptions
    for payload, param in [
        ({"input_file_id": "file-x", "endpoint": "/v1/embeddings", "completion_window": "24h"}, "endpoint"),
        (
            {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "1h"},
            "completion_window",
        ),
        ({"endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
    ]:
        r = await client.post("/v1/batches", json=payload, headers=auth(ALICE))
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    r = await client.post("/v1/files", files={"file": ("x", b"{}")}, data={"purpose": "fine-tune"}, headers=auth(ALICE))
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"


async def test_a_file_with_no_valid_line_fails_the_batch(client: httpx.AsyncClient) -> None:
    f = await client.post(
        "/v1/files", files={"file": ("in.jsonl", b"nope\n")}, data={"purpose": "batch"}, headers=auth(ALICE)
    )
    b = await client.post(
        "/v1/batches",
        json={"input_file_id": f.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        headers=auth(ALICE),
    )
    assert b.json()["status"] == "failed" and b.json()["errors"]["data"][0]["line"] == 1
    assert b.json()["output_file_id"] is None and b.json()["error_file_id"]
    strict = await client.post(
        "/v1/batches",
        json={
            "input_file_id": f.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"routeyard_strict": "true"},
        },
        headers=auth(ALICE),
    )
    assert strict.status_code == 400 and strict.json()["error"]["code"] == "invalid_input_file"
