"""Usage reports and the reconciliation view over a ledger with every kind of row (pooled, BYOK with fees,
abandoned, unpriced, in flight), and the admin API (FastAPI router) serving them, OpenRouter's activity
shape included, on both stores."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from key_helpers import add_call
from prometheus_client import CollectorRegistry
from ry_helpers import make_config
from sqlalchemy import Connection, update

from producer.gateway_ops import metrics_endpoint, ops_router
from shared.catalog import Catalog
from shared.keys import KeyStore
from shared.reports import Where, ledger_totals, percentile, reconciliation, usage_report
from shared.store import Store
from shared.store.writer import Deltas
from shared.tables import Job
from worker.metrics import QueueMetrics

D = Decimal
TODAY = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
DAY1, DAY2 = TODAY - timedelta(days=2) + timedelta(hours=3), TODAY - timedelta(days=1) + timedelta(hours=3)
ADMIN = "Bearer admin-token"


@pytest.fixture
def ledger(db_url: str) -> Iterator[tuple[Store, dict[str, Any]]]:
    import asyncio

    store = Store.open(db_url)
    ks = KeyStore(store)
    ml, ml_token = asyncio.run(ks.create("ml-nightly", team="ml", project="evals", environment="prod"))
    web, _ = asyncio.run(ks.create("web", team="web", environment="dev"))
    jobs = {
        "ml_credits": add_call(store, ml.id, cost=D("0.010"), started_at=DAY1),
        "ml_byok": add_call(store, ml.id, cost=D("0.200"), billed_to="byok", fee=D("0.010"), started_at=DAY1),
        "ml_abandoned": add_call(
            store, ml.id, cost=D("0.003"), status="abandoned", reserved=D("0.003"), started_at=DAY2
        ),
        "web_credits": add_call(store, web.id, cost=D("0.0205"), started_at=DAY2),
        "web_failed": add_call(store, web.id, cost=D("0"), status="failed", started_at=DAY2),
        "web_unpriced": add_call(store, web.id, cost=None, started_at=DAY2),
        "web_in_flight": add_call(store, web.id, cost=None, status="started", reserved=D("0.05"), started_at=DAY2),
        "old": add_call(store, web.id, cost=D("5"), started_at=TODAY - timedelta(days=40)),
    }
    yield store, {"ml": ml, "ml_token": ml_token, "web": web, "jobs": jobs}
    store.close_sync()


def test_reports_split_costs_and_equal_the_ledger(ledger: tuple[Store, dict[str, Any]]) -> None:
    store, k = ledger
    since = TODAY - timedelta(days=30)
    totals = store.read_sync(ledger_totals(since))
    assert totals.cost == D("0.2335") and totals.fees == D("0.010") and totals.unpriced_calls == 1
    for by in [("team",), ("key",), ("project",), ("environment",), ("class",), ("model",), ("day",), ("provider",)]:
        report = store.read_sync(usage_report(by, since))
        assert report.totals.credits + report.totals.byok == totals.cost, by
        assert report.totals.fees == totals.fees and report.totals.calls == 7
        assert report.totals.unpriced_calls == 1 and report.totals.in_flight == D("0.05")
    teams = {r.group["team"]: r for r in store.read_sync(usage_report(("team",), since)).rows}
    ml, web = teams["ml"], teams["web"]
    assert (ml.credits, ml.byok, ml.fees, ml.charged) == (D("0.013"), D("0.2"), D("0.01"), D("0.023"))
    assert (web.credits, web.unpriced_calls, web.in_flight_calls) == (D("0.0205"), 1, 1)
    assert ml.failure_rate == pytest.approx(1 / 3)  # the abandoned call: nobody got its answer
    assert web.failure_rate == pytest.approx(1 / 3) and web.jobs == 4
    days = [r.group["day"] for r in store.read_sync(usage_report(("day",), since)).rows]
    assert days == [DAY1.date().isoformat(), DAY2.date().isoformat()]
    only_ml = store.read_sync(usage_report(("model",), since, where=Where(team="ml")))
    assert only_ml.totals.total == D("0.223")
    # the whole ledger, the old call included, still adds up
    everything = store.read_sync(usage_report(("provider",)))
    assert everything.totals.total == store.read_sync(ledger_totals()).cost + D("0.01")

    recon = store.read_sync(reconciliation(since))
    by_ref = {(r.key_ref, r.day): r for r in recon}
    pooled_day2 = by_ref[("pooled:alpha", DAY2.date().isoformat())]
    assert (pooled_day2.billed_calls, pooled_day2.cost, pooled_day2.unpriced_calls) == (2, D("0.0205"), 1)
    assert (pooled_day2.abandoned_calls, pooled_day2.abandoned_estimate) == (1, D("0.003"))
    assert (pooled_day2.failed_calls, pooled_day2.in_flight_calls) == (1, 1)
    assert by_ref[("byok:pvk_x", DAY1.date().isoformat())].cost == D("0.2")
    assert sum((r.cost + r.abandoned_estimate for r in recon), D(0)) == totals.cost
    assert percentile([], 50) is None and percentile([5, 1, 9][:1], 95) == 5
    assert percentile(list(range(1, 101)), 95) == 95 and percentile(list(range(1, 101)), 50) == 50


def _client(store: Store, queue_box: dict[str, Any]) -> TestClient:
    def require_admin(authorization: str | None = Header(None)) -> None:
        if authorization != ADMIN:
            raise HTTPException(401, "admin key required")

    def queue() -> Any:
        if "queue" not in queue_box:  # made on the app's event loop, on first use
            from producer.embedded import embedded_redis
            from shared.queue import JobQueue

            queue_box["queue"] = JobQueue(embedded_redis())
        return queue_box["queue"]

    catalog = Catalog.from_config(make_config())
    app = FastAPI()
    app.include_router(ops_router(lambda: store, require_admin, queue_factory=queue, catalog_factory=lambda: catalog))
    registry = CollectorRegistry()

    async def refresh() -> None:  # the queue's depth and circuits, read from Redis when scraped
        if "metrics" not in queue_box:
            queue_box["metrics"] = QueueMetrics(queue())
            registry.register(queue_box["metrics"])
        await queue_box["metrics"].refresh()

    app.add_api_route("/metrics", metrics_endpoint(registry, refresh=refresh))
    return TestClient(app, headers={"Authorization": ADMIN})


def test_admin_api(ledger: tuple[Store, dict[str, Any]]) -> None:
    store, k = ledger
    failed_job = k["jobs"]["web_failed"]

    def fail(conn: Connection, deltas: Deltas) -> None:
        jobs = Job.__table__  # type: ignore[attr-defined]
        conn.execute(
            update(jobs)
            .where(jobs.c.id == failed_job)
            .values(state="failed", error_class="upstream", error_message="503 from alpha", finished_at=DAY2)
        )

    store.write_sync(fail)
    box: dict[str, Any] = {}
    with _client(store, box) as client:
        assert client.get("/api/v1/activity", headers={"Authorization": "Bearer nope"}).status_code == 401

        data = client.get("/api/v1/activity").json()["data"]
        assert {d["date"] for d in data} == {DAY1.date().isoformat(), DAY2.date().isoformat()}
        item = data[0]
        assert set(item) >= {
            "date", "model", "model_permaslug", "endpoint_id", "provider_name", "usage", "byok_usage_inference",
            "requests", "prompt_tokens", "completion_tokens", "reasoning_tokens",
        }  # fmt: skip
        assert sum(D(d["usage_decimal"]) for d in data) == D("0.0435")  # credits + fees, last 30 days
        assert sum(D(d["byok_usage_decimal"]) for d in data) == D("0.2")
        assert sum(d["requests"] for d in data) == 7
        one_day = client.get("/api/v1/activity", params={"date": DAY1.date().isoformat()}).json()["data"]
        assert sum(d["requests"] for d in one_day) == 2
        assert client.get("/api/v1/activity", params={"date": "2001-01-01"}).status_code == 400
        assert client.get("/api/v1/activity", params={"date": "01-01-2001"}).json()["error"]["code"] == 400
        token_hash = hashlib.sha256(k["ml_token"].encode()).hexdigest()
        mine = client.get("/api/v1/activity", params={"api_key_hash": token_hash}).json()["data"]
        assert sum(d["requests"] for d in mine) == 3
        assert client.get("/api/v1/activity", params={"api_key_hash": "0" * 64}).json()["data"] == []

        usage = client.get("/admin/reports/usage", params=[("by", "team"), ("by", "day")]).json()
        assert D(usage["totals"]["total"]) == D("0.2435") and usage["totals"]["unpriced_calls"] == 1
        csv_text = client.get("/admin/reports/usage", params={"by": "key", "format": "csv"}).text
        assert csv_text.splitlines()[0].startswith("key,jobs,calls") and len(csv_text.splitlines()) == 3
        assert client.get("/admin/reports/usage", params={"by": "color"}).status_code == 400
        recon = client.get("/admin/reports/reconciliation").json()["data"]
        assert sum(r["abandoned_calls"] for r in recon) == 1
        html = client.get("/admin/reports/chart", params={"by": "team"}).text
        assert "routeyard-data" in html and "<svg" in html and not re.search(r"(src|href)=", html)

        [group] = client.get("/admin/failures").json()["data"]
        assert (group["count"], group["provider"], group["error_class"]) == (1, "alpha", "upstream")
        dry = client.post("/admin/requeue", json=group["requeue"]).json()
        assert (dry["matched"], dry["requeued"]) == (1, 0)
        done = client.post("/admin/requeue", json={**group["requeue"], "dry_run": False}).json()
        assert (done["requeued"], done["enqueued"]) == (1, 1)
        again = client.post("/admin/requeue", json={**group["requeue"], "dry_run": False}).json()
        assert again["requeued"] == 0
        assert client.post("/admin/requeue", json={"states": ["succeeded"]}).status_code == 400
        assert client.post("/admin/cancel", json={"job_ids": [failed_job]}).json() == {"cancelled": 1}
        assert client.post("/admin/cancel", json={}).status_code == 400
        text = client.get("/metrics").text
        assert 'routeyard_queue_jobs{priority="normal",where="waiting"} 1.0' in text
