"""Routing end to end on the simulated farm: a batch mixing classes and OpenRouter preferences under an
organisation policy. The farm's own record of who received which request (with routeyard's job and attempt
ids) proves every call went to an allowed endpoint, and each job's recorded cost is the catalog price of the
endpoint that answered, to the nano-dollar."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from producer.client import BatchOptions
from producer.embedded import Embedded
from shared.catalog import Catalog, Endpoint
from shared.config import PolicyConfig, RouteyardConfig, load_config
from shared.models import JobSpec
from shared.money import quantize
from shared.settings import Settings
from shared.store import Store, queries
from worker.farm import Farm
from worker.router import matches
from worker.runtime import farm_config_for

ORG = PolicyConfig(ignore_providers=["deepseek"], data_collection="allow", regions=["us", "eu"])

JOBS: list[dict[str, Any]] = [
    {"class": "simple"},
    {"class": "simple", "provider": {"ignore": ["openai", "groq/llama-3.1-8b-instruct"]}},
    {"class": "simple", "models": ["llama-3.1-8b-instruct"], "provider": {"only": ["groq", "deepinfra"]}},
    {"class": "simple", "provider": {"max_price": {"prompt": "0.1", "completion": "0.1"}}},
    {"class": "simple", "models": ["llama-3.1-8b-instruct"], "provider": {"data_collection": "deny", "sort": "price"}},
    {
        "class": "standard",
        "models": ["llama-3.3-70b-instruct"],
        "provider": {"order": ["cerebras", "groq"], "allow_fallbacks": False},
    },
    {"class": "standard", "provider": {"sort": "throughput", "ignore": ["openai"]}},
    {"class": "standard", "model": "claude-3-5-haiku", "provider": {"sort": "latency"}},
    {"class": "complex", "provider": {"zdr": True}},
    {"class": "complex", "models": ["gpt-4.1", "gemini-2.5-pro"], "provider": {"only": ["azure", "google"]}},
    {"class": "reasoning", "provider": {"ignore": ["openai", "azure"]}},
    {"class": "reasoning", "provider": {"quantizations": ["unknown"], "order": ["azure"]}},
    {"model": "llama-3.3-70b-instruct:floor", "provider": {"data_collection": "deny"}},
]
COPIES = 4


def _config() -> RouteyardConfig:
    return load_config().model_copy(update={"policy": ORG})


def _allowed(ep: Endpoint, spec: JobSpec) -> bool:
    """The rules, restated independently of the router: organisation first, then the job's preferences."""
    if any(matches(p, ep) for p in ORG.ignore_providers) or (ORG.regions and ep.region not in ORG.regions):
        return False
    prefs = spec.provider
    if prefs is None:
        return True
    if prefs.only is not None and not any(matches(n, ep) for n in prefs.only):
        return False
    if any(matches(n, ep) for n in prefs.ignore or []):
        return False
    if prefs.order and not prefs.allow_fallbacks and not any(matches(n, ep) for n in prefs.order):
        return False
    if prefs.data_collection == "deny" and ep.data_collection == "allow":
        return False
    if prefs.zdr and not ep.zdr:
        return False
    if prefs.quantizations is not None and (ep.quantization or "unknown") not in prefs.quantizations:
        return False
    mp = prefs.max_price
    return mp is None or (
        ep.price is not None
        and (mp.prompt is None or ep.price.input <= mp.prompt)
        and (mp.completion is None or ep.price.output <= mp.completion)
    )


async def test_mixed_preferences_are_served_only_by_allowed_endpoints_at_catalog_prices(
    settings: Settings, store: Store
) -> None:
    config = _config()
    catalog = Catalog.from_config(config)
    farm = Farm(farm_config_for(catalog, latency_ms=0))
    specs = [
        JobSpec.model_validate({"custom_id": f"j{i}-{c}", "prompt": f"Question {i}.{c}: why?", **job})
        for i, job in enumerate(JOBS)
        for c in range(COPIES)
    ]
    async with Embedded(settings, config, farm=farm, store=store) as emb:
        report = await emb.producer.submit_specs(specs, BatchOptions())
        assert report.batch_id and not report.errors, report.errors
        batch = await emb.producer.wait(report.batch_id, poll_s=0.02)
        rows = await store.read(queries.job_page(report.batch_id))
        attempts = await store.read(queries.attempts_for_jobs([r["id"] for r in rows]))
    assert batch["n_succeeded"] == len(specs)

    by_custom = {s.custom_id: s for s in specs}
    served = [r for r in farm.record.requests if r.outcome == "served"]
    assert len(served) == len(specs) == len(farm.record.requests)  # a quiet farm: one call a job
    by_job = {r.job_id: r for r in served}
    providers_used = set()
    for row in rows:
        spec = by_custom[row["custom_id"]]
        record = by_job[row["id"]]  # the farm saw this job's call…
        model_id = catalog.model_by_upstream[(record.provider, record.model or "")]
        ep = catalog.endpoints[f"{record.provider}/{model_id}"]
        providers_used.add(ep.provider)
        # …at an endpoint the organisation and the job allow, of a model the job asked for
        assert _allowed(ep, spec), (row["custom_id"], ep.slug)
        explicit = [m.split(":")[0] for m in spec.requested_models() or []]
        assert not explicit or model_id in explicit
        # the job's answer and cost are that call's, priced from the catalog, exact to the nano-dollar
        assert (row["provider"], row["model"]) == (ep.provider, model_id)
        assert (row["input_tokens"], row["output_tokens"]) == (record.prompt_tokens, record.completion_tokens)
        assert ep.price is not None
        price = (record.prompt_tokens * ep.price.input + record.completion_tokens * ep.price.output) / Decimal(10**6)
        assert row["cost"] == quantize(price)
        [attempt] = attempts[row["id"]]
        assert attempt["id"] == record.attempt_id and attempt["cost"] == quantize(price)
    assert sum((r["cost"] for r in rows), Decimal(0)) == batch["cost_total"]
    assert "deepseek" not in providers_used and len(providers_used) >= 6
