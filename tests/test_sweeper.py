"""The sweeper puts back what Redis lost; the store stays the record."""

from __future__ import annotations

from arq.connections import ArqRedis
from ry_helpers import make_config

from producer.client import Producer
from shared.catalog import Catalog
from shared.models import JobSpec
from shared.queue import JobQueue
from shared.redis_keys import Keys
from shared.store import Store
from worker.sweeper import sweep_once


async def test_jobs_lost_by_redis_are_re_enqueued_once(
    sqlite_store: Store, real_redis: ArqRedis, key_prefix: str
) -> None:
    queue = JobQueue(real_redis, Keys(key_prefix))
    producer = Producer(sqlite_store, queue, Catalog.from_config(make_config()))
    report = await producer.submit_specs([JobSpec(prompt=f"q{i}") for i in range(25)])
    await queue.claim(5)  # five are running (leased)
    # nothing is lost yet: a sweep changes nothing
    assert (await sweep_once(sqlite_store, queue, grace_s=0)).requeued == 0
    # Redis loses everything (restart without persistence, FLUSHALL)
    keys = [k async for k in real_redis.scan_iter(match=f"{key_prefix}*")]
    await real_redis.delete(*keys)
    swept = await sweep_once(sqlite_store, queue, grace_s=0, page=7)
    assert (swept.checked, swept.requeued) == (25, 25)
    # idempotent: running it again adds nothing
    assert (await sweep_once(sqlite_store, queue, grace_s=0)).requeued == 0
    claimed = await queue.claim(100)
    assert len(claimed) == len({i for _, i in claimed}) == 25
    assert report.accepted == 25


async def test_recent_jobs_are_left_to_their_producer(sqlite_store: Store, fake_redis: ArqRedis) -> None:
    queue = JobQueue(fake_redis, Keys("t:"))
    producer = Producer(sqlite_store, queue, Catalog.from_config(make_config()))
    await producer.submit_specs([JobSpec(prompt="q")])
    await fake_redis.flushall()
    assert (await sweep_once(sqlite_store, queue, grace_s=60)).requeued == 0
