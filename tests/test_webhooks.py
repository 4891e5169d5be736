"""Webhooks end to end: submitted through the gateway, delivered by the worker to a receiver on a loopback
port, verified with the `standardwebhooks` library; retried on the (compressed) schedule; a 410 disables
the endpoint; every try is logged; replays; SSRF refusals at submission (API, Python client, CLI)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from gw_helpers import ALICE, BOB, WEBHOOK_CONFIG, FakeAuth, Received, auth, seed_tenant_keys, webhook_receiver
from ry_helpers import TEST_CONFIG, make_config, quiet_farm
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from producer.client import BatchOptions
from producer.embedded import Embedded
from producer.gateway import create_app
from shared.crypto import SecretBox, load_box
from shared.errors import ConfigError, InputError
from shared.models import JobSpec
from shared.settings import Settings
from shared.store import Store
from shared.tables_webhooks import WebhookAttempt, WebhookDelivery, WebhookSubscription
from shared.webhook_targets import check_webhook_url


class Env:
    def __init__(self, client: httpx.AsyncClient, emb: Embedded, store: Store, box: SecretBox) -> None:
        self.client = client
        self.emb = emb
        self.store = store
        self.box = box

    async def rows(self, table: Any) -> list[dict[str, Any]]:
        t = table.__table__
        return await self.store.read(lambda conn: [dict(r) for r in conn.execute(select(t)).mappings()])


@pytest.fixture
async def env(
    request: pytest.FixtureRequest, settings: Settings, fake_redis: ArqRedis, tmp_path: Path
) -> AsyncIterator[Env]:
    """Gateway + embedded worker on SQLite (or PostgreSQL, for tests parametrized `indirect`)."""
    kind = getattr(request, "param", "sqlite")
    url = request.getfixturevalue("pg_url") if kind == "postgres" else f"sqlite:///{tmp_path / 'routeyard.db'}"
    store = Store.open(url)
    config = make_config(WEBHOOK_CONFIG)
    box = load_box(settings.home)
    seed_tenant_keys(store)
    app = create_app(settings, config, store=store, redis=fake_redis, authenticator=FakeAuth(), box=box)
    try:
        async with (
            Embedded(settings, config, farm=quiet_farm(), redis=fake_redis, store=store) as emb,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
        ):
            yield Env(client, emb, store, box)
    finally:
        await store.close()


def _verify(secret: str, r: Received) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(r.body, r.headers)
    return payload


@pytest.mark.parametrize("env", ["sqlite", "postgres"], indirect=True)
async def test_batch_and_job_events_arrive_signed(env: Env) -> None:
    with webhook_receiver() as rec:
        lines = [{"custom_id": f"c{i}", "prompt": f"q{i}"} for i in range(3)]
        r = await env.client.post(
            "/v1/routeyard/batches",
            json={"jobs": lines, "webhook_url": rec.url, "webhook_events": ["job.succeeded", "batch.completed"]},
            headers=auth(ALICE),
        )
        assert r.status_code == 200, r.text
        secret = r.json()["webhook"]["secret"]
        assert secret.startswith("whsec_")
        got = await rec.wait_for(4)
        await _settled(env, 4)  # a request is counted on arrival; its try is logged once answered
    payloads = [_verify(secret, x) for x in got]
    assert sorted(p["type"] for p in payloads) == ["batch.completed"] + ["job.succeeded"] * 3
    batch_event = next(p for p in payloads if p["type"] == "batch.completed")
    assert batch_event["data"]["counts"]["succeeded"] == 3 and batch_event["data"]["id"] == r.json()["batch_id"]
    job_event = next(p for p in payloads if p["type"] == "job.succeeded")
    assert job_event["data"]["response"]["status_code"] == 200 and job_event["data"]["custom_id"].startswith("c")
    # the signature is the spec's HMAC-SHA256 of "id.timestamp.body", computed independently here
    x = got[0]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{x.headers['webhook-id']}.{x.headers['webhook-timestamp']}.".encode() + x.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert x.headers["webhook-signature"] == f"v1,{expected}"
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + base64.b64encode(b"not the secret at all!!!").decode()).verify(x.body, x.headers)
    # the secret is stored encrypted, never in plaintext; every try is logged
    [sub] = await env.rows(WebhookSubscription)
    assert secret not in json.dumps(sub, default=str) and env.box.decrypt(sub["secret_enc"]) == secret
    attempts = await env.rows(WebhookAttempt)
    assert len(attempts) == 4 and {a["outcome"] for a in attempts} == {"succeeded"}
    assert all(a["status_code"] == 200 and a["attempt"] == 1 and a["latency_ms"] is not None for a in attempts)
    # the batch's deliveries are visible to its owner, not to another tenant
    mine = await env.client.get(f"/v1/routeyard/batches/{r.json()['batch_id']}/webhooks", headers=auth(ALICE))
    assert len(mine.json()["data"]) == 4 and "secret" not in mine.text
    theirs = await env.client.get(f"/v1/routeyard/batches/{r.json()['batch_id']}/webhooks", headers=auth(BOB))
    assert theirs.status_code == 404


async def test_a_slow_receiver_gets_many_deliveries_at_once(env: Env) -> None:
    # a receiver that takes 2 s per event must not see a batch's job events one by one (arq's default of
    # a few jobs at a time would make a 10k-job batch's events take hours)
    with webhook_receiver(delay_s=2.0) as rec:
        lines = [{"prompt": f"q{i}"} for i in range(24)]
        r = await env.client.post(
            "/v1/routeyard/batches",
            json={"jobs": lines, "webhook_url": rec.url, "webhook_events": ["job.succeeded"]},
            headers=auth(ALICE),
        )
        assert r.status_code == 200, r.text
        await rec.wait_for(24)
    assert rec.max_concurrent > 8, rec.max_concurrent


async def test_stopping_with_deliveries_in_flight_still_shuts_down_cleanly(env: Env) -> None:
    # arq cancels the deliveries still running at shutdown; that must not skip the worker's own shutdown
    # (drain, flush and close the store): the cut tries are left for webhook_sweep to send again
    with webhook_receiver(delay_s=5.0) as rec:
        r = await env.client.post(
            "/v1/routeyard/batches",
            json={
                "jobs": [{"prompt": f"q{i}"} for i in range(6)],
                "webhook_url": rec.url,
                "webhook_events": ["job.succeeded"],
            },
            headers=auth(ALICE),
        )
        assert r.status_code == 200, r.text
        await rec.wait_for(6)
        await env.emb.worker.stop(grace_s=0)
    assert env.emb.worker.runtime is not None and env.emb.worker.webhooks is not None
    assert not any(t for t in env.emb.worker.tasks.values() if not t.done())
    deliveries = await env.rows(WebhookDelivery)
    assert len(deliveries) >= 6 and {d["status"] for d in deliveries} <= {"pending", "succeeded"}


@pytest.mark.parametrize("env", ["sqlite", "postgres"], indirect=True)
async def test_job_events_lost_with_a_worker_are_recovered_by_the_sweep(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import update

    from shared.tables import Job
    from shared.timeutil import utcnow
    from worker.webhooks import WebhookSink, webhook_sweep

    # the worker "dies" before its sink hands the job events over: they never reach the queue
    monkeypatch.setattr(WebhookSink, "job_finished", lambda self, event: None)
    with webhook_receiver() as rec:
        lines = [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c", "webhook_url": rec.url.replace("/hook", "/own")}]
        r = await env.client.post(
            "/v1/routeyard/batches",
            json={"jobs": lines, "webhook_url": rec.url, "webhook_events": ["job.succeeded", "batch.completed"]},
            headers=auth(ALICE),
        )
        assert r.status_code == 200, r.text
        [batch_event] = await rec.wait_for(1)  # the batch event still goes out
        await _settled(env, 1)
        sweep_ctx = env.emb.worker.ctx
        # a sweep right away leaves them alone: the sink may still be about to flush
        assert (await webhook_sweep(sweep_ctx))["recovered"] == 0
        jobs = Job.__table__  # type: ignore[attr-defined]
        await env.store.write_direct(
            lambda conn, deltas: conn.execute(update(jobs).values(finished_at=utcnow() - timedelta(minutes=2)))
        )
        assert (await webhook_sweep(sweep_ctx))["recovered"] == 3
        got = await rec.wait_for(5)
        await _settled(env, 5)
        # once delivered, a later sweep finds nothing left
        assert (await webhook_sweep(sweep_ctx))["recovered"] == 0
    secret = r.json()["webhook"]["secret"]
    assert _verify(secret, batch_event)["type"] == "batch.completed"
    recovered = sorted((x.path, _verify(secret, x)["type"]) for x in got[1:])
    assert recovered == [("/hook", "job.succeeded")] * 3 + [("/own", "job.succeeded")]


async def test_single_job_webhook(env: Env) -> None:
    with webhook_receiver() as rec:
        r = await env.client.post(
            "/v1/routeyard/jobs", json={"prompt": "hi", "webhook_url": rec.url}, headers=auth(ALICE)
        )
        assert r.status_code == 200, r.text
        secret = r.json()["webhook"]["secret"]
        [got] = await rec.wait_for(1)
        payload = _verify(secret, got)
    assert payload["type"] == "job.succeeded" and payload["data"]["job_id"] == r.json()["job_id"]
    assert got.headers["webhook-id"] == f"msg_{r.json()['job_id']}"


async def test_failing_receiver_is_retried_on_schedule_then_given_up_and_replayed(env: Env) -> None:
    # the receiver fails its first three requests: every try of the schedule ([0, 0.2, 0.2]) fails
    with webhook_receiver(answer=lambda n: {1: 500, 2: 503, 3: 500}.get(n, 200)) as rec:
        r = await env.client.post(
            "/v1/routeyard/jobs", json={"prompt": "hi", "webhook_url": rec.url}, headers=auth(ALICE)
        )
        secret = r.json()["webhook"]["secret"]
        got = await rec.wait_for(3)
        await _settled(env, 1)
        [delivery] = await env.rows(WebhookDelivery)
        assert delivery["status"] == "failed" and delivery["attempts"] == 3
        assert len(rec.received) == 3  # the schedule ran out: no fourth try
        # the same message each time, freshly signed
        assert len({x.headers["webhook-id"] for x in got}) == 1
        assert all(_verify(secret, x)["type"] == "job.succeeded" for x in got)
        tries = sorted(await env.rows(WebhookAttempt), key=lambda a: a["attempt"])
        assert [(a["attempt"], a["status_code"], a["outcome"]) for a in tries] == [
            (1, 500, "retry"),
            (2, 503, "retry"),
            (3, 500, "failed"),
        ]
        assert all(a["latency_ms"] is not None and a["error"] is None for a in tries)

        # replay (what `routeyard webhooks replay --batch B --failed` does): the receiver is back
        from shared.webhook_store import replay_deliveries

        new = await replay_deliveries(
            env.store, env.emb.redis, env.emb.settings.redis_prefix, batch_id=delivery["batch_id"], only_failed=True
        )
        [*_, replayed] = await rec.wait_for(4)
    assert len(new) == 1 and replayed.headers["webhook-id"] == delivery["message_id"]
    assert _verify(secret, replayed)["data"]["job_id"] == r.json()["job_id"]
    await _settled(env, 2)
    statuses = {d["id"]: d["status"] for d in await env.rows(WebhookDelivery)}
    assert statuses == {delivery["id"]: "failed", new[0]: "succeeded"}


def test_retry_delays_follow_the_schedule_with_bounded_jitter() -> None:
    from types import SimpleNamespace

    from worker.webhooks import WebhookService

    svc = WebhookService.__new__(WebhookService)
    svc.config = SimpleNamespace(schedule_s=[0.0, 5.0, 300.0], jitter=0.1)  # type: ignore[assignment]
    for _ in range(50):
        assert svc.delay_before(1) == 0.0
        assert 4.5 <= (svc.delay_before(2) or 0) <= 5.5
        assert 270 <= (svc.delay_before(3) or 0) <= 330
    assert svc.delay_before(4) is None  # three tries in all


async def _settled(env: Env, n: int) -> None:
    """Wait until `n` deliveries are no longer pending."""
    for _ in range(400):
        rows = await env.rows(WebhookDelivery)
        if sum(d["status"] != "pending" for d in rows) >= n:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("deliveries still pending")


async def test_a_lines_own_webhook_url_gets_its_job_events(env: Env) -> None:
    with webhook_receiver() as rec:
        own = rec.url.replace("/hook", "/line-7")
        jobs = [{"prompt": "a"}, {"prompt": "b", "custom_id": "seven", "webhook_url": own}, {"prompt": "c"}]
        r = await env.client.post(
            "/v1/routeyard/batches", json={"jobs": jobs, "webhook_url": rec.url}, headers=auth(ALICE)
        )
        assert r.json()["accepted"] == 3, r.text
        got = await rec.wait_for(2)
        await _settled(env, 2)
    secret = r.json()["webhook"]["secret"]  # one secret signs everything of the submission
    events = sorted((x.path, _verify(secret, x)["type"]) for x in got)
    assert events == [("/hook", "batch.completed"), ("/line-7", "job.succeeded")]
    assert _verify(secret, next(x for x in got if x.path == "/line-7"))["data"]["custom_id"] == "seven"
    # without a batch webhook there is no secret to sign a line's events with: the line is refused
    r = await env.client.post("/v1/routeyard/batches", json={"jobs": jobs}, headers=auth(ALICE))
    assert r.json()["accepted"] == 2 and r.json()["errors"][0]["line"] == 2


async def test_a_cancelled_batch_is_announced(env: Env) -> None:
    await env.emb.worker.drain(0)  # no inference: the jobs wait in the queue (webhook jobs still run)
    with webhook_receiver() as rec:
        r = await env.client.post(
            "/v1/routeyard/batches", json={"jobs": [{"prompt": "a"}, {"prompt": "b"}], "webhook_url": rec.url},
            headers=auth(ALICE),
        )  # fmt: skip
        batch_id = r.json()["batch_id"]
        assert (
            await env.client.post(f"/v1/routeyard/batches/{batch_id}/cancel", headers=auth(ALICE))
        ).status_code == 200
        [got] = await rec.wait_for(1)
    payload = _verify(r.json()["webhook"]["secret"], got)
    assert payload["type"] == "batch.cancelled" and payload["data"]["counts"]["cancelled"] == 2
    assert got.headers["webhook-id"] == f"msg_{batch_id}"


async def test_a_batch_finished_at_submission_is_announced(env: Env) -> None:
    # every line invalid: the batch is complete the moment it is sealed — by the producer, not by a worker
    with webhook_receiver() as rec:
        r = await env.client.post(
            "/v1/routeyard/batches",
            json={"jobs": [{"nope": 1}, {"nope": 2}], "webhook_url": rec.url},
            headers=auth(ALICE),
        )
        assert r.json()["accepted"] == 0 and r.json()["batch"]["state"] == "completed"
        [got] = await rec.wait_for(1)
    payload = _verify(r.json()["webhook"]["secret"], got)
    assert payload["type"] == "batch.failed" and payload["data"]["counts"]["rejected"] == 2


async def test_410_disables_the_endpoint(env: Env) -> None:
    with webhook_receiver(answer=lambda n: 410) as rec:
        lines = [{"prompt": f"q{i}"} for i in range(4)]
        r = await env.client.post(
            "/v1/routeyard/batches",
            json={"jobs": lines, "webhook_url": rec.url, "webhook_events": ["job.succeeded", "batch.completed"]},
            headers=auth(ALICE),
        )
        assert r.status_code == 200
        await rec.wait_for(1)
        await _settled(env, 5)
        await asyncio.sleep(0.3)
        heard = len(rec.received)
    [sub] = await env.rows(WebhookSubscription)
    assert sub["disabled_at"] is not None and "410" in sub["disabled_reason"]
    deliveries = await env.rows(WebhookDelivery)
    assert len(deliveries) == 5
    tried = [d for d in deliveries if d["attempts"]]
    # every delivery that reached the receiver was answered 410 once (no retries); the rest were not tried
    assert heard == len(tried) >= 1 and all(d["attempts"] == 1 and d["status"] == "disabled" for d in tried)
    assert all(d["status"] == "disabled" for d in deliveries)
    assert {a["outcome"] for a in await env.rows(WebhookAttempt)} == {"disabled"}


# ---------------------------------------------------------------------------------------------- SSRF
def _fake_dns(mapping: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        if host not in mapping:
            raise socket.gaierror(f"unknown host {host}")
        return mapping[host]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "https://172.16.0.9/x",
        "http://192.168.1.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/x",
        "http://[::ffff:10.0.0.1]/x",
        "http://0.0.0.0/x",
        "http://100.64.0.1/x",
        "http://internal.example/hook",  # resolves to a private address
        "http://mixed.example/hook",  # one public and one private address: refused
        "ftp://93.184.215.14/x",
        "http://user:pw@93.184.215.14/x",
        "http://nowhere.example/x",  # does not resolve
    ],
)
def test_private_loopback_and_link_local_targets_are_refused(url: str) -> None:
    dns = _fake_dns(
        {
            "localhost": ["127.0.0.1", "::1"],
            "internal.example": ["10.20.30.40"],
            "mixed.example": ["93.184.215.14", "192.168.0.7"],
        }
    )
    with pytest.raises(InputError) as e:
        check_webhook_url(url, resolver=dns)
    assert e.value.code == "webhook_target_refused"


def test_public_targets_pass_and_private_ones_when_allowed() -> None:
    dns = _fake_dns({"hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    check_webhook_url("https://hooks.example.com/routeyard", resolver=dns)
    check_webhook_url("https://93.184.215.14:8443/x", resolver=dns)
    check_webhook_url("http://10.1.2.3/x", allow_private=True)


async def test_refused_at_submission_through_the_api(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo

    def fake_getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.internal.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    seed_tenant_keys(sqlite_store)
    app = create_app(
        settings, make_config(TEST_CONFIG), store=sqlite_store, redis=fake_redis, authenticator=FakeAuth(),
        box=load_box(settings.home),
    )  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        for url in (
            "http://127.0.0.1:9/x",
            "http://10.0.0.5/x",
            "http://169.254.169.254/",
            "https://hooks.internal.example/x",
        ):
            r = await c.post(
                "/v1/routeyard/batches", json={"jobs": [{"prompt": "x"}], "webhook_url": url}, headers=auth(ALICE)
            )
            assert r.status_code == 400 and r.json()["error"]["code"] == "webhook_target_refused", r.text
            r = await c.post("/v1/routeyard/jobs", json={"prompt": "x", "webhook_url": url}, headers=auth(ALICE))
            assert r.status_code == 400 and r.json()["error"]["code"] == "webhook_target_refused", r.text
        # and nothing was stored
        assert (await c.get("/v1/routeyard/batches", headers=auth(ALICE))).json()["data"] == []


async def test_refused_at_submission_through_the_python_client(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    from producer.client import Producer
    from shared.catalog import Catalog
    from shared.queue import JobQueue
    from shared.redis_keys import Keys

    producer = Producer(
        sqlite_store, JobQueue(fake_redis, Keys(settings.redis_prefix)), Catalog.from_config(make_config()),
        box=load_box(settings.home),
    )  # fmt: skip
    with pytest.raises(InputError, match="non-public"):
        await producer.submit_specs([JobSpec(prompt="x")], BatchOptions(webhook_url="http://10.1.1.1/hook"))
    # a line's own webhook URL is checked too, and needs a batch webhook to sign it
    report = await producer.submit_specs([JobSpec(prompt="x", webhook_url="http://169.254.169.254/")])
    assert [e.code for e in report.errors] == ["invalid_request"]
    report = await producer.submit_specs(
        [JobSpec(prompt="x", webhook_url="http://169.254.169.254/")],
        BatchOptions(webhook_url="http://93.184.215.14/hook"),
    )
    assert [e.code for e in report.errors] == ["webhook_target_refused"]
    without_box = Producer(sqlite_store, producer.queue, producer.catalog)
    with pytest.raises(ConfigError):
        await without_box.submit_specs([JobSpec(prompt="x")], BatchOptions(webhook_url="http://93.184.215.14/h"))


def test_refused_at_submission_through_the_cli(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    f = tmp_path / "in.jsonl"
    f.write_text('{"prompt": "x"}\n')
    env = {**os.environ, "ROUTEYARD_HOME": str(tmp_path / "home"), "REDIS_URL": "redis://127.0.0.1:1/0"}
    env.pop("DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "submit", str(f), "--webhook-url", "http://169.254.169.254/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "refused" in proc.stderr and "169.254.169.254" in proc.stderr, proc.stderr


async def test_cli_lists_deliveries_and_replays(
    settings: Settings, tmp_path: Path, real_redis: ArqRedis, key_prefix: str
) -> None:
    import os
    import subprocess
    import sys

    from shared.timeutil import utcnow
    from shared.webhook_store import insert_deliveries, new_delivery, record_attempt
    from shared.webhooks import arq_queue_name, subscribe

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = Store.open(url)
    box = load_box(settings.home)
    sub, op = subscribe(box, "bat_cli", "https://93.184.215.14/hook", ["batch.completed"], None)
    await store.write_direct(op)
    row = new_delivery(
        sub.id, sub.url, "msg_bat_cli", "batch.completed", "{}", batch_id="bat_cli", job_id=None, now=utcnow()
    )
    [delivery_id] = await store.write_direct(insert_deliveries([row]))
    row["id"] = delivery_id
    await store.write_direct(
        record_attempt(row, attempt=1, started_at=utcnow(), outcome="failed", status_code=502, latency_ms=12,
                       error=None, next_attempt_at=None)
    )  # fmt: skip
    await store.close()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "ROUTEYARD_REDIS_PREFIX": key_prefix,
        "ROUTEYARD_HOME": str(settings.home),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "producer.cli", "webhooks", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli("deliveries", "--batch", "bat_cli", "--json")
    assert listed.returncode == 0, listed.stderr
    [d] = json.loads(listed.stdout)
    assert d["status"] == "failed" and d["tries"][0]["status_code"] == 502 and "secret" not in listed.stdout
    replayed = cli("replay", "--batch", "bat_cli", "--failed")
    assert replayed.returncode == 0, replayed.stderr
    [new_id] = replayed.stdout.split()
    try:
        assert await real_redis.zscore(arq_queue_name(key_prefix), f"{new_id}:1") is not None  # queued for the workers
    finally:
        await real_redis.delete(f"arq:job:{new_id}:1")
    store = Store.open(url)
    rows = await store.read(lambda conn: [dict(r) for r in conn.execute(select(WebhookDelivery.__table__)).mappings()])  # type: ignore[attr-defined]
    await store.close()
    by_id = {r["id"]: r for r in rows}
    assert by_id[new_id]["replay_of"] == delivery_id and by_id[new_id]["message_id"] == "msg_bat_cli"
    assert cli("replay").returncode == 2
