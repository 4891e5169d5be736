"""The sweeper puts back what Redis lost, and seals batches whose producer died mid-upload; the store stays
the record."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from ry_helpers import REDIS_URL, make_config

from producer.client import CHUNK, BatchOptions, Producer
from producer.ingest import Line
from shared.catalog import Catalog
from shared.models import JobSpec
from shared.queue import JobQueue
from shared.redis_keys import Keys
from shared.store import Store, ops, queries
from worker.sweeper import seal_stale_submissions, sweep_once


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


def _dies_after(n: int) -> Iterator[Line]:
    for i in range(n):
        yield Line(i + 1, JobSpec(prompt=f"q{i}"))
    raise ConnectionResetError("the uploading client went away")


async def test_a_batch_whose_producer_died_mid_upload_is_sealed_and_completes(
    store: Store, fake_redis: ArqRedis
) -> None:
    queue = JobQueue(fake_redis, Keys("t:"))
    producer = Producer(store, queue, Catalog.from_config(make_config()))
    with pytest.raises(ConnectionResetError):
        await producer.submit_lines_threaded(_dies_after(CHUNK + 5), BatchOptions())
    [stuck] = await store.read(queries.batch_list(api_key_id=None, all_keys=True))
    assert (stuck["state"], stuck["n_total"]) == ("submitting", CHUNK)  # the first chunk was stored
    # a live upload is left alone
    assert await seal_stale_submissions(store, stale_s=600) == (0, [])
    # the stored jobs finish (here: cancelled); the batch cannot complete while it is `submitting`
    assert await store.write(ops.cancel_jobs(batch_id=stuck["id"])) == CHUNK
    assert (await store.read(queries.batch(stuck["id"])))["state"] == "submitting"
    await asyncio.sleep(0.01)
    assert await seal_stale_submissions(store, stale_s=0.001) == (1, [stuck["id"]])
    done = await store.read(queries.batch(stuck["id"]))
    assert (done["state"], done["n_total"], done["n_cancelled"]) == ("completed", CHUNK, CHUNK)
    # sealing is done once
    assert await seal_stale_submissions(store, stale_s=0.001) == (0, [])


async def test_a_sealed_batch_with_jobs_still_to_run_stays_open(sqlite_store: Store, fake_redis: ArqRedis) -> None:
    queue = JobQueue(fake_redis, Keys("t:"))
    producer = Producer(sqlite_store, queue, Catalog.from_config(make_config()))
    with pytest.raises(ConnectionResetError):
        await producer.submit_lines_threaded(_dies_after(CHUNK), BatchOptions())
    await asyncio.sleep(0.01)
    [stuck] = await sqlite_store.read(queries.batch_list(api_key_id=None, all_keys=True))
    assert await seal_stale_submissions(sqlite_store, stale_s=0.001) == (1, [])
    assert (await sqlite_store.read(queries.batch(stuck["id"])))["state"] == "open"


async def test_the_sweep_command_seals_a_dead_producers_batch(
    tmp_path: Path, key_prefix: str, real_redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from producer.cli import app
    from shared.settings import get_settings

    url = f"sqlite:///{tmp_path / 'routeyard.db'}"
    store = Store.open(url)
    producer = Producer(store, JobQueue(real_redis, Keys(key_prefix)), Catalog.from_config(make_config()))
    with pytest.raises(ConnectionResetError):
        await producer.submit_lines_threaded(_dies_after(3), BatchOptions())
    await store.close()
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "ROUTEYARD_REDIS_PREFIX": key_prefix,
        "ROUTEYARD_HOME": str(tmp_path),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:  # the command runs its own event loop: give it a thread
        kept = await asyncio.to_thread(CliRunner().invoke, app, ["sweep"])  # 600 s default: left alone
        sealed = await asyncio.to_thread(CliRunner().invoke, app, ["sweep", "--seal-after", "0.001"])
    finally:
        get_settings.cache_clear()
    assert kept.exit_code == 0 and "sealed" not in kept.stdout, kept.stdout
    assert sealed.exit_code == 0 and "sealed 1 batches" in sealed.stdout, (sealed.stdout, sealed.exception)
