"""The worker end to end in one process (embedded mode: fakeredis or real Redis, SQLite, in-process farm):
retries, fallbacks, failures that must not fall back, deferral, graceful hand-back, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from arq.connections import ArqRedis
from ry_helpers import TEST_CONFIG, make_config, quiet_farm

from producer.client import BatchOptions
from producer.embedded import Embedded
from shared.models import JobSpec
from shared.settings import Settings
from shared.store import Store, ops, queries


async def _run(
    settings: Settings, store: Store, redis: ArqRedis, farm: Any, specs: list[dict[str, Any]], **opts: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], Embedded]:
    async with Embedded(settings, make_config(), farm=farm, redis=redis, store=store) as emb:
        report = await emb.producer.submit_specs([JobSpec.model_validate(s) for s in specs], BatchOptions(**opts))
        assert report.batch_id and not report.errors, report.errors
        batch = await asyncio.wait_for(emb.producer.wait(report.batch_id, poll_s=0.02), 30)
        lines = [line async for line in emb.producer.results(report.batch_id)]
    return batch, lines, emb


@pytest.fixture
async def redis_any(redis: ArqRedis) -> AsyncIterator[ArqRedis]:
    yield redis


async def test_batch_runs_and_costs_match_the_catalog(settings: Settings, sqlite_store: Store, redis: ArqRedis) -> None:
    farm = quiet_farm()
    batch, lines, _ = await _run(settings, sqlite_store, redis, farm, [{"prompt": f"q{i}"} for i in range(30)])
    assert batch["n_succeeded"] == 30 and batch["state"] == "completed"
    served = farm.record.requests
    assert len(served) == 30
    for line in lines:
        usage = line["usage"]
        expected = (Decimal(usage["input_tokens"]) * 1 + Decimal(usage["output_tokens"]) * 2) / 1_000_000
        assert Decimal(line["cost"]) == expected.quantize(Decimal("1e-9"))
        assert line["response"]["body"]["choices"][0]["message"]["content"]
    assert sum(Decimal(x["cost"]) for x in lines) == batch["cost_total"]


async def test_fallback_when_a_provider_is_down(settings: Settings, sqlite_store: Store, fake_redis: ArqRedis) -> None:
    farm = quiet_farm(alpha={"down": True}, beta={"down": True})
    batch, lines, _ = await _run(settings, sqlite_store, fake_redis, farm, [{"prompt": f"q{i}"} for i in range(30)])
    assert batch["n_succeeded"] == 30
    assert {x["provider"] for x in lines} == {"gamma"}
    job = await sqlite_store.read(queries.job(lines[0]["job_id"]))
    tried = [(a["provider"], a["status"], a["error_class"]) for a in job["attempt_rows"]]
    assert tried[-1] == ("gamma", "succeeded", None)
    assert all(t == (t[0], "failed", "upstream") and t[0] in ("alpha", "beta") for t in tried[:-1])
    # the circuit breakers open after 5 consecutive failures: the down endpoints stop receiving traffic.
    # All 30 jobs start at once, so each may make one call before the circuits open — but not the
    # 2 tries x 2 endpoints x 30 jobs = 120 calls there would be without breakers.
    down_calls = sum(1 for r in farm.record.requests if r.provider in ("alpha", "beta"))
    assert down_calls <= 30 + 5, down_calls


async def test_context_error_skips_to_a_larger_window(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    farm = quiet_farm()
    # the provider's real window is smaller than the catalog says: it answers 400 context_length_exceeded
    farm.set_behaviour("alpha", context_length={"*": 100})
    farm.set_behaviour("beta", context_length={"*": 100})
    batch, [line], _ = await _run(settings, sqlite_store, fake_redis, farm, [{"prompt": "x", "max_tokens": 150}])
    assert batch["n_succeeded"] == 1 and line["provider"] == "gamma"
    # one context error is enough: the other 4,000-token endpoint is skipped, not tried
    assert line["attempts"] == 2


async def test_invalid_request_fails_without_fallback(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.providers.openai_compat import OpenAICompatAdapter

    build = OpenAICompatAdapter._build

    def broken(self, endpoint, request, credential):  # type: ignore[no-untyped-def]
        url, headers, body = build(self, endpoint, request, credential)
        body.pop("messages")  # the farm answers 400 invalid_request_error, as OpenAI would
        return url, headers, body

    monkeypatch.setattr(OpenAICompatAdapter, "_build", broken)
    batch, [line], _ = await _run(settings, sqlite_store, fake_redis, quiet_farm(), [{"prompt": "x"}])
    assert batch["n_failed"] == 1
    assert line["error"]["code"] == "invalid_request" and line["attempts"] == 1


async def test_no_route_fails_with_reasons(settings: Settings, sqlite_store: Store, fake_redis: ArqRedis) -> None:
    farm = quiet_farm()
    async with Embedded(settings, make_config(), farm=farm, redis=fake_redis, store=sqlite_store) as emb:
        report = await emb.producer.submit_specs(
            [JobSpec(prompt="x", provider={"data_collection": "deny", "only": ["gamma"]})]
        )
    [err] = report.errors
    assert err.code == "no_route" and "gamma/big" in err.message and "train" in err.message


async def test_rate_limited_everywhere_defers_instead_of_failing(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    farm = quiet_farm(**{p: {"p_429": 1.0, "retry_after_s": 30} for p in ("alpha", "beta", "gamma")})
    async with Embedded(settings, make_config(), farm=farm, redis=fake_redis, store=sqlite_store) as emb:
        report = await emb.producer.submit_specs([JobSpec(prompt="x")])
        assert report.batch_id
        for _ in range(200):
            b = await emb.producer.batch(report.batch_id)
            if b and b["n_queued"] == 1 and emb.worker.dispatcher and emb.worker.dispatcher.stats.deferred:
                break
            await asyncio.sleep(0.02)
        page = await sqlite_store.read(queries.job_page(report.batch_id))
    [job] = page
    assert job["state"] == "queued" and job["not_before"] is not None and job["runs"] == 0
    assert job["attempts"] == 3  # one try per endpoint: a 30 s retry-after is not waited out in place


async def test_drain_hands_running_jobs_back_without_burning_a_try(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    farm = quiet_farm(**{p: {"latency_ms": 5000} for p in ("alpha", "beta", "gamma")})
    emb = Embedded(settings, make_config(), farm=farm, redis=fake_redis, store=sqlite_store)
    async with emb:
        report = await emb.producer.submit_specs([JobSpec(prompt=f"x{i}") for i in range(4)])
        assert report.batch_id
        while not emb.worker.dispatcher or len(emb.worker.dispatcher.in_flight) < 4:
            await asyncio.sleep(0.01)
        await emb.worker.drain(grace_s=0.1)
        page = await sqlite_store.read(queries.job_page(report.batch_id))
        assert {j["state"] for j in page} == {"queued"} and {j["runs"] for j in page} == {0}
        items = await emb.queue.claim(10)  # handed back: due at once
        assert len(items) == 4
    # the interrupted calls stay in the ledger and will be marked abandoned by the next claim
    claimed = await sqlite_store.write(ops.claim_jobs([i for _, i in items], "next"))
    job = await sqlite_store.read(queries.job(claimed[0].id))
    assert [a["status"] for a in job["attempt_rows"]] == ["abandoned"]


async def test_cancelled_jobs_are_dropped_by_the_worker(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    farm = quiet_farm()
    async with Embedded(settings, make_config(), farm=farm, redis=fake_redis, store=sqlite_store) as emb:
        await emb.worker.drain(0)  # no worker running while we submit and cancel
        report = await emb.producer.submit_specs([JobSpec(prompt=f"x{i}") for i in range(3)])
        assert report.batch_id
        assert await sqlite_store.write(ops.cancel_jobs(batch_id=report.batch_id)) == 3
    assert farm.record.requests == []
    b = await sqlite_store.read(queries.batch(report.batch_id))
    assert b["state"] == "completed" and b["n_cancelled"] == 3


async def test_transient_failures_everywhere_are_planned_again_while_calls_remain(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    # one candidate (gamma), two tries per run (retries_per_endpoint = 1), six calls allowed (max_attempts):
    # a job whose two calls both met a 529 is deferred and planned again, not failed with four calls unspent
    farm = quiet_farm(gamma={"p_503": 1.0})
    async with Embedded(settings, make_config(), farm=farm, redis=fake_redis, store=sqlite_store) as emb:
        report = await emb.producer.submit_specs([JobSpec.model_validate({"prompt": "x", "class": "bigonly"})])
        assert report.batch_id
        while len(farm.record.requests) < 2:
            await asyncio.sleep(0.005)
        farm.set_behaviour("gamma", p_503=0.0)  # the provider recovers while the job waits out its backoff
        batch = await asyncio.wait_for(emb.producer.wait(report.batch_id, poll_s=0.02), 30)
        [line] = [line async for line in emb.producer.results(report.batch_id)]
    assert batch["n_succeeded"] == 1, line
    job = await sqlite_store.read(queries.job(line["job_id"]))
    statuses = [(a["status"], a["error_class"]) for a in job["attempt_rows"]]
    assert statuses == [("failed", "upstream"), ("failed", "upstream"), ("succeeded", None)]
    assert job["runs"] == 1  # the deferral did not count as a run


async def test_transient_failures_stop_at_max_attempts(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    farm = quiet_farm(gamma={"p_503": 1.0})
    config = make_config(TEST_CONFIG + "\n[circuits]\nconsecutive_failures = 50\n")
    async with Embedded(settings, config, farm=farm, redis=fake_redis, store=sqlite_store) as emb:
        report = await emb.producer.submit_specs([JobSpec.model_validate({"prompt": "x", "class": "bigonly"})])
        assert report.batch_id
        batch = await asyncio.wait_for(emb.producer.wait(report.batch_id, poll_s=0.02), 60)
        [line] = [line async for line in emb.producer.results(report.batch_id)]
    assert batch["n_failed"] == 1
    assert line["error"]["code"] == "attempts_exhausted" and line["attempts"] == 6
    assert len(farm.record.requests) == 6
