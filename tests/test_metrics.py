"""Worker metrics (Prometheus exposition on a port) and structured JSON logs carrying job ids, secrets
redacted."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import httpx
from arq.connections import ArqRedis
from prometheus_client.parser import text_string_to_metric_families
from ry_helpers import make_config, quiet_farm

from producer.embedded import Embedded
from shared.logjson import JsonFormatter, job_context
from shared.models import JobSpec
from shared.settings import Settings
from shared.store import Store


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_worker_serves_metrics_and_logs_json_with_job_ids(
    settings: Settings, sqlite_store: Store, fake_redis: ArqRedis
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    routeyard_log = logging.getLogger("routeyard")
    routeyard_log.addHandler(handler)
    farm = quiet_farm(alpha={"p_500": 1.0}, beta={"p_500": 1.0})  # calls fail there; gamma answers
    try:
        async with Embedded(
            settings, make_config(), farm=farm, redis=fake_redis, store=sqlite_store, metrics_port=0
        ) as emb:
            report = await emb.producer.submit_specs([JobSpec(prompt=f"q{i}") for i in range(20)])
            assert report.batch_id
            batch = await asyncio.wait_for(emb.producer.wait(report.batch_id, poll_s=0.05), 30)
            metrics = emb.worker.metrics
            assert metrics is not None and emb.worker.metrics_bound_port
            await metrics.queue_metrics.refresh()
            url = f"http://127.0.0.1:{emb.worker.metrics_bound_port}/metrics"
            text = (await asyncio.to_thread(httpx.get, url, timeout=10)).text
    finally:
        routeyard_log.removeHandler(handler)

    m = _samples(text)
    assert m[("routeyard_jobs_finished_total", (("state", "succeeded"),))] == 20 == batch["n_succeeded"]
    answered = {k: v for k, v in m.items() if k[0] == "routeyard_attempts_total" and ("status", "succeeded") in k[1]}
    assert sum(answered.values()) == 20
    assert all(("provider", "gamma") in k[1] for k in answered)
    failed = sum(v for k, v in m.items() if k[0] == "routeyard_attempts_total" and ("status", "failed") in k[1])
    assert failed > 0
    assert abs(m[("routeyard_cost_usd_total", ())] - float(batch["cost_total"])) < 1e-9
    assert m[("routeyard_dispatch_total", (("event", "claimed"),))] >= 20
    assert m[("routeyard_jobs_in_flight", ())] == 0
    assert ("routeyard_queue_jobs", (("priority", "normal"), ("where", "waiting"))) in m

    # lines logged while a job ran carry its ids, without the call sites passing them
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    about_jobs = [x for x in lines if "job_id" in x]
    assert about_jobs and all(x["batch_id"] == report.batch_id for x in about_jobs)


def test_json_formatter_redacts_and_uses_the_job_context() -> None:
    secret = "sk-live-abcdefghijklmnopqrstuvwx"
    formatter = JsonFormatter(secrets=lambda: ["hunter2-pass"])
    logger = logging.getLogger("routeyard.test.json")

    def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, args, None, extra=extra or None)

    out = json.loads(formatter.format(record("key %s refused; password hunter2-pass", secret, job_id="job_1")))
    assert out["job_id"] == "job_1" and out["level"] == "warning" and out["logger"] == "routeyard.test.json"
    assert secret not in out["msg"] and "hunter2-pass" not in out["msg"] and "[redacted]" in out["msg"]

    token = job_context.set(("job_2", "bat_2"))
    try:
        out = json.loads(formatter.format(record("plain")))
    finally:
        job_context.reset(token)
    assert (out["job_id"], out["batch_id"]) == ("job_2", "bat_2")
    try:
        raise RuntimeError(f"boom {secret}")
    except RuntimeError:
        import sys

        rec = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = json.loads(formatter.format(rec))
    assert "RuntimeError" in out["exc"] and secret not in out["exc"]
