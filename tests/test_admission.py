"""Admission on fakeredis and real Redis: shared rate buckets, circuit breakers, and budget reservations
that concurrency cannot overspend and a dead owner cannot leak."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

from arq.connections import ArqRedis

from shared.catalog import Endpoint
from shared.config import CircuitConfig, WorkerConfig
from shared.errors import RateLimited, UpstreamError
from worker.admission import Admission, BudgetScope, Denial, Ticket
from worker.providers.base import RateLimitInfo


def _ep(rpm: int | None = None, tpm: int | None = None, slug: str = "p/m") -> Endpoint:
    return Endpoint(
        slug=slug,
        model="m",
        provider="p",
        upstream_model="m",
        wire="openai",
        price=None,
        context_length=8000,
        rpm=rpm,
        tpm=tpm,
    )


def _adm(redis: ArqRedis, prefix: str, **circuit: object) -> Admission:
    return Admission(redis, prefix, CircuitConfig(**circuit), WorkerConfig(rate_safety=1.0, reservation_margin_s=60))  # type: ignore[arg-type]


async def _admit(adm: Admission, ep: Endpoint, att: str, amount: str | None = None, scopes=(), tokens: int = 10):  # type: ignore[no-untyped-def]
    value = None if amount is None else Decimal(amount)
    return await adm.admit(ep, "pooled:p", att, tokens=tokens, charges=[(s, value) for s in scopes], timeout_s=5)


async def test_request_bucket_allows_a_second_of_burst_then_paces(redis: ArqRedis, key_prefix: str) -> None:
    adm = _adm(redis, key_prefix)
    ep = _ep(rpm=600)  # 10 a second
    results = [await _admit(adm, ep, f"a{i}") for i in range(12)]
    admitted = [r for r in results if isinstance(r, Ticket)]
    denied = [r for r in results if isinstance(r, Denial)]
    assert len(admitted) in (10, 11) and all(d.kind == "rate" and 0 < d.wait_s <= 0.2 for d in denied)
    await asyncio.sleep(0.25)
    assert isinstance(await _admit(adm, ep, "later"), Ticket)


async def test_token_bucket_counts_tokens(redis: ArqRedis, key_prefix: str) -> None:
    adm = _adm(redis, key_prefix)
    ep = _ep(tpm=60_000)  # 1,000 tokens a second
    assert isinstance(await _admit(adm, ep, "a", tokens=900), Ticket)
    denial = await _admit(adm, ep, "b", tokens=900)
    assert isinstance(denial, Denial) and denial.kind == "rate" and denial.wait_s > 0.5


async def test_buckets_are_shared_by_every_admission_object(redis: ArqRedis, key_prefix: str) -> None:
    """Two workers (two Admission objects on the same Redis) share one limit, not one each."""
    a, b = _adm(redis, key_prefix), _adm(redis, key_prefix)
    ep = _ep(rpm=300)  # 5 a second
    got = [
        await (a if i % 2 else b).admit(ep, "pooled:p", f"x{i}", tokens=1, charges=[], timeout_s=5) for i in range(10)
    ]
    assert sum(isinstance(g, Ticket) for g in got) <= 6


async def test_a_429_blocks_the_bucket_for_retry_after(redis: ArqRedis, key_prefix: str) -> None:
    adm = _adm(redis, key_prefix)
    ep = _ep()
    t = await _admit(adm, ep, "a")
    assert isinstance(t, Ticket)
    await adm.settle(t, error=RateLimited("slow", status_code=429, retry_after=0.3), charges=None)
    d = await _admit(adm, ep, "b")
    assert isinstance(d, Denial) and d.kind == "rate" and 0.1 < d.wait_s <= 0.3
    await asyncio.sleep(0.35)
    assert isinstance(await _admit(adm, ep, "c"), Ticket)


async def test_provider_headers_tighten_and_teach_the_bucket(redis: ArqRedis, key_prefix: str) -> None:
    adm = _adm(redis, key_prefix)
    ep = _ep()  # no configured limit: the provider's headers teach one
    t = await _admit(adm, ep, "a")
    assert isinstance(t, Ticket)
    await adm.settle(t, error=None, rate=RateLimitInfo(limit_requests=60, remaining_requests=0))
    d = await _admit(adm, ep, "b")
    assert isinstance(d, Denial) and d.kind == "rate"


async def test_circuit_opens_probes_and_closes(redis: ArqRedis, key_prefix: str) -> None:
    adm = _adm(redis, key_prefix, consecutive_failures=3, cooldown_s=0.3)
    ep = _ep()
    for i in range(3):
        t = await _admit(adm, ep, f"f{i}")
        assert isinstance(t, Ticket)
        await adm.settle(t, error=UpstreamError("boom", status_code=503), charges=None)
    d = await _admit(adm, ep, "blocked")
    assert isinstance(d, Denial) and d.kind == "health"
    assert await adm.open_circuits() == frozenset({"p/m"})
    await asyncio.sleep(0.35)
    assert await adm.open_circuits() == frozenset()  # due a probe: the planner may route there again
    probe = await _admit(adm, ep, "probe")
    assert isinstance(probe, Ticket) and probe.probe
    other = await _admit(adm, ep, "meanwhile")  # one probe at a time
    assert isinstance(other, Denial) and other.kind == "health"
    await adm.settle(probe, error=None, charges=None)
    assert isinstance(await _admit(adm, ep, "after"), Ticket)


async def test_failed_probe_reopens_with_a_longer_cooldown(redis: ArqRedis, key_prefix: str) -> None:
    adm = _adm(redis, key_prefix, consecutive_failures=1, cooldown_s=0.2, max_cooldown_s=5)
    ep = _ep()
    t = await _admit(adm, ep, "a")
    await adm.settle(t, error=UpstreamError("x"), charges=None)  # type: ignore[arg-type]
    await asyncio.sleep(0.25)
    probe = await _admit(adm, ep, "probe")
    assert isinstance(probe, Ticket)
    await adm.settle(probe, error=UpstreamError("still down"), charges=None)
    await asyncio.sleep(0.25)  # the first cooldown has passed, the doubled one has not
    d = await _admit(adm, ep, "b")
    assert isinstance(d, Denial) and d.kind == "health"


async def test_circuit_opens_on_failure_rate(redis: ArqRedis, key_prefix: str) -> None:
    adm = _adm(redis, key_prefix, consecutive_failures=100, failure_rate=0.5, min_calls=10)
    ep = _ep()
    rng = random.Random(1)
    for i in range(40):
        t = await _admit(adm, ep, f"a{i}")
        if isinstance(t, Denial):
            break
        fail = rng.random() < 0.7
        await adm.settle(t, error=UpstreamError("x") if fail else None, charges=None)
    assert await adm.open_circuits() == frozenset({"p/m"})


async def test_concurrent_reservations_never_exceed_the_limit(redis: ArqRedis, key_prefix: str) -> None:
    adm = _adm(redis, key_prefix)
    ep = _ep()

    async def spent() -> Decimal:
        return Decimal("0.10")

    scope = BudgetScope("key:k1", Decimal("1.00"), "2026-11", spent)
    results = await asyncio.gather(*(_admit(adm, ep, f"a{i}", "0.07", [scope]) for i in range(40)))
    admitted = [r for r in results if isinstance(r, Ticket)]
    assert len(admitted) == 12  # (1.00 - 0.10) / 0.07 = 12.86
    # settle with real costs below the reservations: headroom comes back
    for t in admitted:
        await adm.settle(t, error=None, charges=[Decimal("0.05")])
    assert isinstance(await _admit(adm, ep, "next", "0.07", [scope]), Ticket)
    assert await adm.reservations_outstanding("key:k1") == 1


async def test_new_period_rebuilds_the_scope_from_the_ledger(redis: ArqRedis, key_prefix: str) -> None:
    adm = _adm(redis, key_prefix)
    ep = _ep()
    calls = []

    async def spent() -> Decimal:
        calls.append(1)
        return Decimal("0.95")

    t = await _admit(adm, ep, "a", "0.04", [BudgetScope("key:k", Decimal("1"), "day-1", spent)])
    assert isinstance(t, Ticket) and len(calls) == 1
    d = await _admit(adm, ep, "b", "0.04", [BudgetScope("key:k", Decimal("1"), "day-1", spent)])
    assert isinstance(d, Denial) and d.kind == "budget" and len(calls) == 1  # cached in Redis

    async def fresh() -> Decimal:
        return Decimal(0)

    t2 = await _admit(adm, ep, "c", "0.04", [BudgetScope("key:k", Decimal("1"), "day-2", fresh)])
    assert isinstance(t2, Ticket)


async def test_an_expired_reservation_is_kept_as_spent_and_replaced_by_a_late_answer(
    redis: ArqRedis, key_prefix: str
) -> None:
    adm = _adm(redis, key_prefix)
    ep = _ep()

    async def zero() -> Decimal:
        return Decimal(0)

    scope = BudgetScope("batch:b", Decimal("0.10"), "", zero)
    t = await adm.admit(ep, "pooled:p", "dead", tokens=1, charges=[(scope, Decimal("0.08"))], timeout_s=-59.9)
    assert isinstance(t, Ticket)
    await asyncio.sleep(0.2)
    assert await adm.reclaim_expired() == 1
    assert await adm.reservations_outstanding("batch:b") == 0
    # its worker is presumed dead: the worst case stays spent, so the budget stays safe
    d = await _admit(adm, ep, "next", "0.05", [scope])
    assert isinstance(d, Denial) and d.kind == "budget"
    # ...until the call is answered after all: the real cost replaces the estimate
    await adm.settle(t, error=None, charges=[Decimal("0.01")])
    assert isinstance(await _admit(adm, ep, "next2", "0.05", [scope]), Ticket)


async def test_unpriced_endpoint_cannot_spend_against_a_limit(redis: ArqRedis, key_prefix: str) -> None:
    adm = _adm(redis, key_prefix)

    async def zero() -> Decimal:
        return Decimal(0)

    d = await _admit(adm, _ep(), "a", None, [BudgetScope("key:k", Decimal(1), "", zero)])
    assert isinstance(d, Denial) and d.kind == "unpriced"
