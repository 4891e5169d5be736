"""1,000 jobs through real Redis, a real `routeyard worker` process and the simulated farm served over
loopback HTTP by `routeyard simulate` — on SQLite and on PostgreSQL. The ledger must equal what the farm
says it served, call for call and token for token, and every job must hold its answer and its cost."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis
from ry_helpers import REDIS_URL, REPO, free_port, routeyard_cmd, start_process, stop_process, wait_for_http
from sqlalchemy import select

from producer.client import BatchOptions, Producer
from shared.catalog import Catalog
from shared.config import load_config
from shared.models import JobSpec
from shared.queue import JobQueue
from shared.redis_keys import Keys
from shared.store import Store
from shared.tables import Attempt

pytestmark = pytest.mark.slow


def _specs(n: int) -> list[JobSpec]:
    base = [json.loads(line) for line in (REPO / "examples" / "prompts.jsonl").read_text().splitlines()]
    out = []
    for i in range(n):
        item = dict(base[i % len(base)])
        item["custom_id"] = f"{item.get('custom_id', 'job')}-{i}"
        out.append(JobSpec.model_validate(item))
    return out


async def test_thousand_jobs_ledger_equals_what_the_farm_served(
    db_url: str, real_redis: ArqRedis, key_prefix: str, tmp_path: Path
) -> None:
    farm_port = free_port()
    farm_url = f"http://127.0.0.1:{farm_port}"
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "ROUTEYARD_REDIS_PREFIX": key_prefix,
        "ROUTEYARD_SIM_URL": farm_url,
        "ROUTEYARD_HOME": str(tmp_path / "home"),
    }
    farm = start_process(
        routeyard_cmd("simulate", "--port", str(farm_port), "--latency-ms", "5"), env, tmp_path / "farm.log"
    )
    store = Store.open(db_url)
    worker = None
    try:
        wait_for_http(farm_url + "/_farm/stats")
        worker = start_process(routeyard_cmd("worker", "--concurrency", "200"), env, tmp_path / "worker.log")
        catalog = Catalog.from_config(load_config())
        producer = Producer(store, JobQueue(real_redis, Keys(key_prefix)), catalog)
        report = await producer.submit_specs(_specs(1000), BatchOptions(source="e2e"))
        assert report.accepted == 1000 and not report.errors and report.batch_id
        batch = await asyncio.wait_for(producer.wait(report.batch_id, poll_s=0.2), timeout=180)
        assert batch["n_succeeded"] == 1000, (tmp_path / "worker.log").read_text()[-3000:]

        async with httpx.AsyncClient(base_url=farm_url) as client:
            served = (await client.get("/_farm/requests")).json()
        served_ok = {r["attempt_id"]: r for r in served if r["outcome"] == "served"}

        attempts = await store.read(lambda conn: [dict(r) for r in conn.execute(select(Attempt.__table__)).mappings()])  # type: ignore[attr-defined]
        recorded_ok = {a["id"]: a for a in attempts if a["status"] == "succeeded"}
        # call for call: every served call is a succeeded attempt and vice versa
        assert set(served_ok) == set(recorded_ok)
        for att_id, a in recorded_ok.items():
            r = served_ok[att_id]
            assert (a["input_tokens"], a["output_tokens"]) == (r["prompt_tokens"], r["completion_tokens"])
            assert r["job_id"] == a["job_id"]
        assert sum(a["input_tokens"] for a in recorded_ok.values()) == sum(
            r["prompt_tokens"] for r in served_ok.values()
        )
        # every job has its answer and a cost, and the costs add up to the batch total
        lines = [line async for line in producer.results(report.batch_id)]
        assert len(lines) == 1000 and all(line["response"]["body"]["choices"] for line in lines)
        assert all(line["cost"] is not None and Decimal(line["cost"]) > 0 for line in lines)
        assert sum(Decimal(x["cost"]) for x in lines) == batch["cost_total"]
        assert Counter(a["job_id"] for a in recorded_ok.values()).most_common(1)[0][1] == 1
    finally:
        if worker is not None:
            assert stop_process(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        stop_process(farm)
        await store.close()
