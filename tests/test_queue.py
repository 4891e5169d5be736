"""The dispatch queue on fakeredis and real Redis: strict priorities, fair share between tenants and
batches, leases that expire, duplicates dropped, and key names that agree with `shared.redis_keys`."""

from __future__ import annotations

import asyncio
from collections import Counter

from arq.connections import ArqRedis

from shared.queue import DEFAULT_TENANT, JobQueue
from shared.redis_keys import Keys


def _ids(prefix: str, n: int) -> list[str]:
    return [f"job_{prefix}{i:06d}" for i in range(n)]


async def test_strict_priority_then_fifo(redis: ArqRedis, key_prefix: str) -> None:
    q = JobQueue(redis, Keys(key_prefix))
    await q.enqueue(_ids("low", 5), priority=2, lane="b1")
    await q.enqueue(_ids("norm", 5), priority=1, lane="b2")
    await q.enqueue(_ids("high", 2), priority=0, lane="b3")
    got = await q.claim(8)
    assert [p for p, _ in got] == [0, 0, 1, 1, 1, 1, 1, 2]
    assert [i for _, i in got][:4] == ["job_high000000", "job_high000001", "job_norm000000", "job_norm000001"]


async def test_small_batch_is_not_starved_by_a_large_one(redis: ArqRedis, key_prefix: str) -> None:
    q = JobQueue(redis, Keys(key_prefix), quantum=4)
    await q.enqueue(_ids("big", 5000), priority=1, lane="big")
    first = await q.claim(100)  # the big batch has been running a while
    await q.enqueue(_ids("small", 10), priority=1, lane="small")
    nxt = [i for _, i in await q.claim(24)]
    # the newcomer joins at the current minimum service and then shares slots about evenly: all 10 of its
    # jobs start within the next 24 slots, not after the 4,900 waiting big-batch jobs
    assert sum(i.startswith("job_small") for i in nxt) == 10
    assert sum(i.startswith("job_small") for i in nxt[:12]) >= 5
    assert len(first) == 100


async def test_fair_share_between_tenants(redis: ArqRedis, key_prefix: str) -> None:
    q = JobQueue(redis, Keys(key_prefix), quantum=2)
    await q.enqueue(_ids("a", 1000), priority=1, tenant="keyA", lane="b1")
    await q.enqueue(_ids("a2", 1000), priority=1, tenant="keyA", lane="b2")
    await q.enqueue(_ids("b", 1000), priority=1, tenant="keyB", lane="b3")
    got = [i for _, i in await q.claim(300)]
    by_tenant = Counter("A" if i.startswith("job_a") else "B" for i in got)
    # tenant B (one batch) gets about as much as tenant A (two batches), not a third
    assert abs(by_tenant["A"] - by_tenant["B"]) <= 10, by_tenant


async def test_lease_expiry_makes_a_job_due_again(redis: ArqRedis, key_prefix: str) -> None:
    q = JobQueue(redis, Keys(key_prefix))
    q.lease_ms = 200
    await q.enqueue(["job_x"], priority=1)
    assert await q.claim(10) == [(1, "job_x")]
    assert await q.claim(10) == []  # leased
    await asyncio.sleep(0.3)  # the worker died: no renewal
    assert await q.claim(10) == [(1, "job_x")]


async def test_renew_keeps_the_lease_and_ack_removes(redis: ArqRedis, key_prefix: str) -> None:
    q = JobQueue(redis, Keys(key_prefix))
    q.lease_ms = 300
    await q.enqueue(["job_x", "job_y"], priority=1)
    items = await q.claim(10)
    for _ in range(3):
        await asyncio.sleep(0.15)
        await q.renew(items)
    assert await q.claim(10) == []
    await q.ack(items)
    assert (await q.depth())[1] == {"waiting": 0, "scheduled": 0}


async def test_reschedule_defers_and_hands_back(redis: ArqRedis, key_prefix: str) -> None:
    q = JobQueue(redis, Keys(key_prefix))
    await q.enqueue(["job_x"], priority=1)
    items = await q.claim(1)
    await q.reschedule(items, 250)  # deferred until a bucket refills
    assert await q.claim(1) == []
    await asyncio.sleep(0.3)
    items = await q.claim(1)
    assert items == [(1, "job_x")]
    await q.reschedule(items, 0)  # handed back on shutdown: due at once
    assert await q.claim(1) == [(1, "job_x")]


async def test_duplicates_are_dropped(redis: ArqRedis, key_prefix: str) -> None:
    q = JobQueue(redis, Keys(key_prefix))
    assert await q.enqueue(["job_x"], priority=1, lane="b") == 1
    assert await q.enqueue(["job_x"], priority=1, lane="b") == 0  # already waiting there
    [item] = await q.claim(5)
    # the sweeper re-enqueues it while it is leased (e.g. after a partial Redis loss)
    await q.enqueue(["job_x"], priority=1, lane="b")
    assert await q.claim(5) == []  # the leased copy wins; the duplicate is dropped
    assert item == (1, "job_x")


async def test_present_reports_what_redis_holds(redis: ArqRedis, key_prefix: str) -> None:
    q = JobQueue(redis, Keys(key_prefix))
    await q.enqueue(["job_a", "job_b"], priority=1, tenant="k", lane="b1")
    await q.claim(1)  # job_a leased, job_b waiting
    seen = await q.present(
        [("job_a", 1, "k", "b1"), ("job_b", 1, "k", "b1"), ("job_c", 1, "k", "b1"), ("job_b", 1, None, "b1")]
    )
    assert seen == {"job_a": True, "job_b": False, "job_c": False} or (seen["job_a"] and not seen["job_c"])


async def test_lua_key_layout_matches_python(redis: ArqRedis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    q = JobQueue(redis, keys)
    await q.enqueue(["job_a", "job_b"], priority=2, tenant="ten", lane="lane1")
    assert await redis.zscore(keys.lane(2, "ten", "lane1"), "job_a") == 0
    assert await redis.zscore(keys.lanes(2, "ten"), "lane1") is not None
    assert await redis.zscore(keys.tenants(2), "ten") is not None
    assert int(await redis.get(keys.depth(2))) == 2
    await q.claim(1)
    assert await redis.zscore(keys.sched(2), "job_a") is not None
    await q.claim(1)
    # drained lanes and tenants are retired
    assert not await redis.exists(keys.lane(2, "ten", "lane1"))
    assert await redis.zscore(keys.tenants(2), "ten") is None
    assert DEFAULT_TENANT == "_"


async def test_concurrent_claims_never_hand_out_a_job_twice(redis: ArqRedis, key_prefix: str) -> None:
    q = JobQueue(redis, Keys(key_prefix))
    ids = _ids("c", 2000)
    await q.enqueue(ids, priority=1, lane="b")
    claims = await asyncio.gather(*(q.claim(37) for _ in range(80)))
    got = [i for batch in claims for _, i in batch]
    assert len(got) == len(set(got)) == 2000
