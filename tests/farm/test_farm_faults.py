"""Fault injection: deterministic per attempt id, honest about its rates, and hangs that really hang."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from farm_helpers import Connect, MakeFarm

from worker.farm import ProviderBehaviour

FAULTY = ProviderBehaviour(p_429=0.1, p_500=0.1, p_503=0.05, retry_after_s=2.5)


async def test_same_attempt_id_meets_the_same_fate(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(openai=ProviderBehaviour(p_500=0.5))
    async with connect(farm) as fc:
        first = [(await fc.openai(headers={"x-routeyard-attempt-id": f"a{i}"})).status_code for i in range(40)]
        again = [(await fc.openai(headers={"x-routeyard-attempt-id": f"a{i}"})).status_code for i in range(40)]
    assert first == again
    assert set(first) == {200, 500}


async def test_without_attempt_ids_a_fresh_farm_replays_the_same_sequence(
    make_farm: MakeFarm, connect: Connect
) -> None:
    outcomes = []
    for _ in range(2):
        farm = make_farm(openai=ProviderBehaviour(p_500=0.3, p_503=0.2))
        async with connect(farm) as fc:
            outcomes.append([(await fc.openai(prompt=f"q{i}")).status_code for i in range(60)])
    assert outcomes[0] == outcomes[1]
    # reset() restarts the counter, so the sequence replays on the same farm too.
    farm.reset()
    async with connect(farm) as fc:
        assert [(await fc.openai(prompt=f"q{i}")).status_code for i in range(60)] == outcomes[0]


async def test_seed_changes_the_sequence(make_farm: MakeFarm, connect: Connect) -> None:
    runs = []
    for seed in (1, 2):
        farm = make_farm(seed=seed, openai=ProviderBehaviour(p_500=0.5))
        async with connect(farm) as fc:
            runs.append([(await fc.openai()).status_code for _ in range(40)])
    assert runs[0] != runs[1]


async def test_same_request_twice_same_usage_and_text(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm()
    async with connect(farm) as fc:
        first, second = await fc.openai(prompt="Repeat me"), await fc.openai(prompt="Repeat me")
    assert first.json()["usage"] == second.json()["usage"]
    assert first.json()["choices"] == second.json()["choices"]
    assert first.json()["id"] != second.json()["id"]


async def test_fault_rates_are_roughly_honoured(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(openai=FAULTY)
    n = 2000
    async with connect(farm) as fc:
        statuses = [(await fc.openai(headers={"x-routeyard-attempt-id": f"job-{i}:1"})).status_code for i in range(n)]
    share = {code: statuses.count(code) / n for code in (200, 429, 500, 503)}
    assert abs(share[429] - 0.10) < 0.03
    assert abs(share[500] - 0.10) < 0.03
    assert abs(share[503] - 0.05) < 0.02
    assert abs(share[200] - 0.75) < 0.04
    assert farm.record.stats["openai"].by_status == {code: statuses.count(code) for code in set(statuses)}


@pytest.mark.parametrize(("provider", "call"), [("openai", "openai"), ("anthropic", "anthropic"), ("google", "gemini")])
async def test_injected_429_carries_retry_after(
    make_farm: MakeFarm, connect: Connect, provider: str, call: str
) -> None:
    wire = {"openai": "openai", "anthropic": "anthropic", "google": "gemini"}[provider]
    farm = make_farm(**{provider: ProviderBehaviour(wire=wire, p_429=1.0, retry_after_s=2.5)})
    async with connect(farm) as fc:
        r: httpx.Response = await getattr(fc, call)(provider)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "3"  # whole seconds, rounded up
    assert r.headers["retry-after-ms"] == "2500"
    if wire == "anthropic":
        assert r.json()["error"]["type"] == "rate_limit_error"
    elif wire == "gemini":
        assert r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert r.json()["error"]["details"][0]["retryDelay"] == "2.5s"
    else:
        assert r.json()["error"]["code"] == "rate_limit_exceeded"


async def test_hang_is_recorded_when_it_begins_and_outlasts_the_client(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(openai=ProviderBehaviour(p_hang=1.0, hang_s=30.0))
    async with connect(farm) as fc:
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            # ASGITransport ignores httpx timeouts (there is no socket), so time out around the call.
            await asyncio.wait_for(fc.openai(headers={"x-routeyard-job-id": "j1"}), timeout=0.1)
        assert time.perf_counter() - started < 1.0
    (entry,) = farm.record.find(job_id="j1")
    assert (entry.outcome, entry.status_code, entry.prompt_tokens, entry.completion_tokens) == (
        "hung",
        None,
        0,
        0,
    )
    assert farm.record.stats["openai"].hung == 1
    assert farm.record.stats["openai"].served == 0


async def test_a_hang_the_client_outlasts_ends_in_504_recorded_once(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(openai=ProviderBehaviour(p_hang=1.0, hang_s=0.05))
    async with connect(farm) as fc:
        r = await fc.openai()
    assert r.status_code == 504
    assert [e.outcome for e in farm.record.requests] == ["hung"]


async def test_latency_is_slept_and_zero_means_no_sleep(make_farm: MakeFarm, connect: Connect) -> None:
    slow = make_farm(openai=ProviderBehaviour(latency_ms=40, jitter_ms=10))
    async with connect(slow) as fc:
        started = time.perf_counter()
        await fc.openai()
        assert time.perf_counter() - started >= 0.029
    fast = make_farm()
    async with connect(fast) as fc:
        started = time.perf_counter()
        for _ in range(200):
            await fc.openai()
        assert time.perf_counter() - started < 2.0


async def test_per_token_latency(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(openai=ProviderBehaviour(ms_per_output_token=1.0))
    async with connect(farm) as fc:
        started = time.perf_counter()
        r = await fc.openai(max_tokens=200)
        elapsed = time.perf_counter() - started
    assert elapsed >= r.json()["usage"]["completion_tokens"] / 1000 * 0.9
