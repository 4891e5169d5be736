"""Re-queue after an outage, cancel, purge; and reports that equal the ledger (and the ledger what the farm
served) to the nano-dollar, with their chart and CLI forms."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis
from ry_helpers import TEST_CONFIG, make_config, quiet_farm
from sqlalchemy import select
from typer.testing import CliRunner

from producer.chart import chart_data, render_html
from producer.client import BatchOptions, Producer
from producer.embedded import Embedded
from producer.requeue import Rewrite, cancel, requeue
from producer.retention import PURGED_KEY, purge
from shared.catalog import Catalog
from shared.models import JobSpec
from shared.queue import JobQueue
from shared.redis_keys import Keys
from shared.reports import ledger_totals, reconciliation, usage_report
from shared.settings import Settings, get_settings
from shared.store import Store, queries
from shared.store.selection import JobFilter
from shared.tables import Attempt
from shared.timeutil import utcnow

# one call per job: a down gamma fails its jobs in one round (with calls left they would be planned again)
OUTAGE = (
    TEST_CONFIG.replace("max_attempts = 6", "max_attempts = 1").replace(
        "retries_per_endpoint = 1", "retries_per_endpoint = 0\noutage_wait_s = 0.2"
    )
    # breakers stay closed: this test is about jobs that fail, not about traffic leaving a provider
    + "\n[circuits]\nconsecutive_failures = 1000\nmin_calls = 1000\n"
)


async def _ledger(store: Store) -> list[dict[str, Any]]:
    t = Attempt.__table__  # type: ignore[attr-defined]
    return await store.read(lambda c: [dict(r) for r in c.execute(select(t)).mappings()])


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    def use(db_url: str) -> Any:
        monkeypatch.setenv("DATABASE_URL", db_url)
        monkeypatch.setenv("ROUTEYARD_HOME", str(tmp_path / "home"))
        (tmp_path / "routeyard.toml").write_text(OUTAGE)
        monkeypatch.setenv("ROUTEYARD_CONFIG", str(tmp_path / "routeyard.toml"))
        get_settings.cache_clear()

        def invoke(*args: str) -> Any:
            from producer.cli import app

            result = CliRunner().invoke(app, list(args))
            assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
            return result

        return invoke

    yield use
    get_settings.cache_clear()


async def test_requeue_after_an_outage(
    settings: Settings, store: Store, fake_redis: ArqRedis, db_url: str, cli_env: Any, tmp_path: Path
) -> None:
    config = make_config(OUTAGE)
    catalog = Catalog.from_config(config)
    farm = quiet_farm(config, gamma={"down": True})
    specs = [JobSpec(prompt=f"easy {i}") for i in range(8)] + [
        JobSpec.model_validate({"prompt": f"hard {i}", "class": "bigonly"}) for i in range(8)
    ]
    async with Embedded(settings, config, farm=farm, redis=fake_redis, store=store) as emb:
        submitted = await emb.producer.submit_specs(specs, BatchOptions())
        bid = submitted.batch_id
        assert bid is not None
        batch = await asyncio.wait_for(emb.producer.wait(bid, poll_s=0.05), 30)
        assert (batch["state"], batch["n_succeeded"], batch["n_failed"]) == ("completed", 8, 8)

        flt = JobFilter(batch_id=bid, provider="gamma")
        [group] = await store.read(queries.failures(where=flt))
        assert (group.count, group.provider, group.model) == (8, "gamma", "big")

        farm.set_behaviour("gamma", down=False)
        dry = await requeue(store, emb.queue, flt, catalog=catalog, dry_run=True)
        assert (dry.matched, dry.requeued, dict(dry.by_state)) == (8, 0, {"failed": 8})
        assert dry.sample and all(s["provider"] == "gamma" for s in dry.sample)
        unchanged = await store.read(queries.batch(bid))
        assert (unchanged["state"], unchanged["n_failed"]) == ("completed", 8)

        # two operators at once: each job moves back (and is enqueued) once
        first, second = await asyncio.gather(
            requeue(store, emb.queue, flt, catalog=catalog), requeue(store, emb.queue, flt, catalog=catalog)
        )
        assert first.requeued + second.requeued == 8
        assert first.enqueued + second.enqueued == 8
        reopened = await store.read(queries.batch(bid))
        assert reopened["n_failed"] == 0 and reopened["state"] in ("open", "completed")

        batch = await asyncio.wait_for(emb.producer.wait(bid, poll_s=0.05), 30)
        assert (batch["state"], batch["n_succeeded"], batch["n_failed"]) == ("completed", 16, 0)
        again = await requeue(store, emb.queue, JobFilter(batch_id=bid), catalog=catalog)
        assert (again.matched, again.requeued) == (0, 0)

    # history kept: the failed round and the answered one; counters are the new round's
    job = await store.read(queries.job(group.job_ids[0]))
    assert job["state"] == "succeeded" and job["requeues"] == 1 and job["attempts"] == 1
    assert [(a["provider"], a["status"]) for a in job["attempt_rows"]] == [("gamma", "failed"), ("gamma", "succeeded")]

    # the ledger is what the farm served, and reports are the ledger, exactly
    ledger = await _ledger(store)
    served = {r.attempt_id for r in farm.record.requests if r.outcome == "served"}
    assert served == {a["id"] for a in ledger if a["status"] == "succeeded"}
    assert len(ledger) == 16 + 8
    ledger_cost = sum((a["cost"] for a in ledger), Decimal(0))
    assert ledger_cost == batch["cost_total"] > 0
    for a in ledger:
        if a["status"] == "succeeded":
            ep = catalog.endpoints[a["endpoint"]]
            assert a["cost"] == ep.cost(a["input_tokens"], a["output_tokens"], a["cached_tokens"])
    for by in (("provider",), ("class", "model"), ("day",), ("key",)):
        report = await store.read(usage_report(by))
        assert report.totals.total == ledger_cost, by
        assert sum((r.total for r in report.rows), Decimal(0)) == ledger_cost
        assert report.totals.calls == len(ledger) and report.totals.jobs == 16
    totals = await store.read(ledger_totals())
    assert (totals.cost, totals.fees, totals.calls) == (ledger_cost, Decimal(0), len(ledger))
    by_provider = {r.group["provider"]: r for r in (await store.read(usage_report(("provider",)))).rows}
    assert by_provider["gamma"].failed == 8 and by_provider["gamma"].failure_rate == 0.5
    assert by_provider["gamma"].p50_ms is not None
    recon = await store.read(reconciliation())
    assert sum((r.cost for r in recon), Decimal(0)) == ledger_cost
    assert sum(r.billed_calls for r in recon) == len(served)
    assert {r.key_ref for r in recon} == {"pooled:alpha", "pooled:beta", "pooled:gamma"} & {r.key_ref for r in recon}

    # the chart carries the series, and they add up to the total
    series = await store.read(usage_report(("day", "provider")))
    html = render_html(series, "provider")
    data = json.loads(re.search(r'id="routeyard-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert sum(Decimal(v) for s in data["series"] for v in s["values"].values()) == ledger_cost
    assert {s["name"] for s in data["series"]} == set(by_provider)
    assert "<svg" in html and "<rect" in html
    assert not re.search(r"""(src|href)=|url\(|@import""", html)  # nothing is fetched
    assert chart_data(series, "provider")["total"] == str(ledger_cost)

    # the same through the CLI
    sync_invoke = cli_env(db_url)

    async def invoke(*args: str) -> Any:  # the CLI runs its own event loop
        return await asyncio.to_thread(sync_invoke, *args)

    out = await invoke("requeue", "--batch", bid, "--dry-run")
    assert "would re-queue 0 job(s)" in out.stdout
    chart = tmp_path / "spend.html"
    csv_out = (await invoke("report", "--by", "provider", "--format", "csv", "--chart", str(chart))).stdout
    rows = csv_out.strip().splitlines()
    assert rows[0].startswith("provider,jobs,calls") and len(rows) == 1 + len(by_provider)
    assert sum(Decimal(line.split(",")[rows[0].split(",").index("total")]) for line in rows[1:]) == ledger_cost
    assert "routeyard-data" in chart.read_text()
    table = (await invoke("report", "--by", "day", "--by", "provider")).stdout
    assert "total" in table and "gamma" in table
    recon_json = json.loads((await invoke("report", "--reconcile", "--format", "json")).stdout)
    assert sum(Decimal(r["cost"]) for r in recon_json) == ledger_cost


async def test_cancel_requeue_with_rewrite_and_purge(store: Store, fake_redis: ArqRedis, key_prefix: str) -> None:
    config = make_config(OUTAGE)
    catalog = Catalog.from_config(config)
    queue = JobQueue(fake_redis, Keys(key_prefix))
    producer = Producer(store, queue, catalog)
    report = await producer.submit_specs([JobSpec(prompt=f"q{i}") for i in range(5)], BatchOptions())
    bid = report.batch_id
    assert bid is not None

    assert await cancel(store, batch_id=bid) == 5
    b = await store.read(queries.batch(bid))
    assert (b["state"], b["n_cancelled"]) == ("cancelled", 5)
    assert await cancel(store, batch_id=bid) == 0  # nothing left to cancel

    flt = JobFilter(states=("cancelled",), batch_id=bid)
    bad = await requeue(store, queue, flt, catalog=catalog, rewrite=Rewrite(models=("no-such-model",)))
    assert bad.errors and bad.requeued == 0
    assert (await store.read(queries.batch(bid)))["n_cancelled"] == 5  # nothing changed

    moved = await requeue(store, queue, flt, catalog=catalog, rewrite=Rewrite(class_name="bigonly"))
    # cancelled while still waiting in the queue: their ids are there already and are not added twice
    assert (moved.requeued, moved.enqueued) == (5, 0)
    b = await store.read(queries.batch(bid))
    assert (b["state"], b["n_cancelled"], b["n_queued"]) == ("open", 0, 5)
    page = await store.read(queries.job_page(bid))
    assert {j["class_name"] for j in page} == {"bigonly"}
    assert all(json.loads(j["spec"])["class"] == "bigonly" and j["requeues"] == 1 for j in page)
    depth = await queue.depth()
    assert sum(d["waiting"] for d in depth.values()) == 5

    # retention: bodies go, the rows and their numbers stay; purged jobs cannot run again
    await cancel(store, job_ids=[j["id"] for j in page])
    later = utcnow()
    dry = await purge(store, later, dry_run=True)
    assert dry.jobs == 5 and '"prompt"' in (await store.read(queries.job(page[0]["id"])))["spec"]
    done = await purge(store, later)
    assert done.jobs == 5 and done.bytes > 0
    assert (await purge(store, later)).jobs == 0  # idempotent
    job = await store.read(queries.job(page[0]["id"]))
    stub = json.loads(job["spec"])
    assert PURGED_KEY in stub and "prompt" not in stub and stub["class"] == "bigonly"
    assert job["state"] == "cancelled" and job["result"] is None
    again = await requeue(store, queue, flt, catalog=catalog)
    assert (again.matched, again.purged, again.requeued) == (0, 5, 0)
    gone = await purge(store, later, delete_jobs=True, dry_run=True)
    assert (gone.jobs, gone.attempts) == (5, 0)
    gone = await purge(store, later, delete_jobs=True)
    assert gone.jobs == 5 and await store.read(queries.job(page[0]["id"])) is None
    assert (await store.read(queries.batch(bid)))["n_total"] == 5  # the batch's aggregates stay
