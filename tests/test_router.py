"""The planner against OpenRouter's documented provider-routing semantics, the organisation's policy, budgets
and live state — and submission validation, which asks the planner whether a job can ever run."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from arq.connections import ArqRedis
from ry_helpers import make_config

from producer.validate import SpecChecker
from shared.catalog import Catalog
from shared.config import PolicyConfig, parse_config
from shared.errors import InputError
from shared.models import JobSpec
from shared.store import Store
from worker.router import EndpointStats, LiveState, Plan, Why, job_seed, plan

WORLD = """
[routing]
default_class = "mid"

[providers.cheap]
base_url = "sim://cheap"
data_collection = "allow"
[providers.safe]
base_url = "sim://safe"
zdr = true
region = "eu"
[providers.fast]
base_url = "sim://fast"
[providers.big]
base_url = "sim://big"
wire = "anthropic"

[models.small]
context_length = 8000
endpoints = [
  { provider = "cheap", price = { input = "0.10", output = "0.20" }, quantization = "fp8" },
  { provider = "safe", price = { input = "0.20", output = "0.40" }, supported_parameters = ["max_tokens", "temperature"] },
  { provider = "fast", price = { input = "0.30", output = "0.60" }, quantization = "bf16" },
]
[models.large]
context_length = 200000
endpoints = [
  { provider = "big", price = { input = "3", output = "15" } },
  { provider = "safe", price = { input = "3", output = "15" }, max_output_tokens = 1000 },
]

[classes.low]
models = ["small"]
max_tokens = 100
[classes.mid]
models = ["small", "large"]
max_tokens = 500
[classes.high]
models = ["large"]
max_tokens = 2000
max_cost = "0.01"
over_budget = "downgrade"
[classes.strict]
models = ["large"]
max_tokens = 2000
max_cost = "0.01"
over_budget = "fail"
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_config(parse_config(WORLD))


def _plan(
    catalog: Catalog, policy: PolicyConfig | None = None, live: LiveState | None = None, seed: int = 0, **job: Any
) -> Plan:
    spec = JobSpec.model_validate({"prompt": "hello there", **job})
    return plan(spec, catalog, policy or catalog.config.policy, live, seed=seed)


def _slugs(p: Plan) -> list[str]:
    return [c.endpoint.slug for c in p.candidates]


# ------------------------------------------------------------------------------------------ default strategy
def test_default_draw_odds_are_inverse_square_of_the_jobs_price(catalog: Catalog) -> None:
    p = _plan(catalog, **{"class": "low"})
    odds = {c.endpoint.slug: c.first_odds for c in p.candidates}
    # prices for the job scale 1 : 2 : 3 (same token mix), so weights 1 : 1/4 : 1/9
    w = {"cheap/small": 1.0, "safe/small": 1 / 4, "fast/small": 1 / 9}
    total = sum(w.values())
    assert odds == pytest.approx({k: v / total for k, v in w.items()})
    assert sum(c for _, c in p.first_choice()) == pytest.approx(1.0)


def test_fallback_models_follow_the_primary_model_and_never_go_first(catalog: Catalog) -> None:
    p = _plan(catalog)
    assert [c.endpoint.model for c in p.candidates] == ["small"] * 3 + ["large"] * 2
    assert all(c.first_odds == 0 for c in p.candidates if c.endpoint.model == "large")


def test_same_seed_same_plan_and_seeds_differ(catalog: Catalog) -> None:
    assert _slugs(_plan(catalog, seed=7)) == _slugs(_plan(catalog, seed=7))
    firsts = {_slugs(_plan(catalog, seed=s))[0] for s in range(200)}
    assert firsts == {"cheap/small", "safe/small", "fast/small"}
    assert job_seed("job_1", 3) == job_seed("job_1", 3) != job_seed("job_2", 3)


# ------------------------------------------------------------------------------------------ provider object
def test_order_goes_first_then_the_rest_unless_fallbacks_are_off(catalog: Catalog) -> None:
    p = _plan(catalog, **{"class": "low", "provider": {"order": ["fast", "safe"]}})
    assert _slugs(p)[:2] == ["fast/small", "safe/small"] and _slugs(p)[2] == "cheap/small"
    assert p.candidates[0].first_odds == 1.0
    p = _plan(catalog, **{"class": "low", "provider": {"order": ["fast"], "allow_fallbacks": False}})
    assert _slugs(p) == ["fast/small"]
    assert p.excluded["cheap/small"].why is Why.PREFERENCE


def test_no_fallbacks_without_order_keeps_only_the_lowest_cost(catalog: Catalog) -> None:
    for seed in range(20):
        p = _plan(catalog, seed=seed, **{"class": "low", "provider": {"allow_fallbacks": False}})
        assert _slugs(p) == ["cheap/small"]


def test_sort_by_price_latency_and_throughput(catalog: Catalog) -> None:
    assert _slugs(_plan(catalog, **{"class": "low", "provider": {"sort": "price"}})) == [
        "cheap/small",
        "safe/small",
        "fast/small",
    ]
    live = LiveState(stats={"fast/small": EndpointStats(100, 90.0), "safe/small": EndpointStats(300, 200.0)})
    by_latency = _plan(catalog, live=live, **{"class": "low", "provider": {"sort": "latency"}})
    assert _slugs(by_latency) == ["fast/small", "safe/small", "cheap/small"]  # unmeasured last
    by_tps = _plan(catalog, live=live, **{"class": "low", "provider": {"sort": {"by": "throughput"}}})
    assert _slugs(by_tps) == ["safe/small", "fast/small", "cheap/small"]


def test_sort_partition_none_sorts_across_models(catalog: Catalog) -> None:
    live = LiveState(stats={"big/large": EndpointStats(50, 500.0)})
    p = _plan(catalog, live=live, **{"provider": {"sort": {"by": "throughput", "partition": "none"}}})
    assert _slugs(p)[0] == "big/large"
    by_model = _plan(catalog, live=live, **{"provider": {"sort": "throughput"}})
    assert _slugs(by_model)[0].endswith("/small")


def test_only_and_ignore_match_provider_and_endpoint_slugs_case_insensitively(catalog: Catalog) -> None:
    p = _plan(catalog, **{"provider": {"only": ["SAFE"]}})
    assert set(_slugs(p)) == {"safe/small", "safe/large"}
    p = _plan(catalog, **{"provider": {"ignore": ["safe/small", "Cheap"]}})
    assert set(_slugs(p)) == {"fast/small", "big/large", "safe/large"}
    assert p.excluded["safe/small"].why is Why.PREFERENCE


def test_max_price_caps_prompt_and_completion_prices(catalog: Catalog) -> None:
    p = _plan(catalog, **{"provider": {"max_price": {"prompt": "0.2", "completion": "0.3"}}})
    assert _slugs(p) == ["cheap/small"]
    assert p.excluded["safe/small"].why is Why.PRICE and "completion price" in p.excluded["safe/small"].reason
    # per-request and per-image ceilings: the catalog charges neither, so they exclude nothing
    assert len(_plan(catalog, **{"provider": {"max_price": {"request": "0", "image": "0"}}}).candidates) == 5


def test_data_collection_deny_and_zdr(catalog: Catalog) -> None:
    p = _plan(catalog, **{"provider": {"data_collection": "deny"}})
    assert "cheap/small" not in _slugs(p) and p.excluded["cheap/small"].why is Why.DATA_POLICY
    p = _plan(catalog, **{"provider": {"zdr": True}})
    assert set(_slugs(p)) == {"safe/small", "safe/large"}


def test_quantizations_treat_undeclared_as_unknown(catalog: Catalog) -> None:
    assert _slugs(_plan(catalog, **{"class": "low", "provider": {"quantizations": ["FP8"]}})) == ["cheap/small"]
    assert _slugs(_plan(catalog, **{"class": "low", "provider": {"quantizations": ["unknown"]}})) == ["safe/small"]


def test_require_parameters_and_the_soft_preference_for_tools(catalog: Catalog) -> None:
    p = _plan(catalog, **{"class": "low", "top_p": 0.5, "provider": {"require_parameters": True}})
    assert "safe/small" not in _slugs(p) and p.excluded["safe/small"].why is Why.PARAMETERS
    # without require_parameters, tools still go only where they are supported when some endpoint does
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    p = _plan(catalog, **{"class": "low", "tools": tools})
    assert "safe/small" not in _slugs(p) and "tools" in p.excluded["safe/small"].reason


def test_preferred_thresholds_deprioritise_but_never_exclude(catalog: Catalog) -> None:
    live = LiveState(stats={"cheap/small": EndpointStats(5000, 10.0)})
    for seed in range(20):
        p = _plan(catalog, live=live, seed=seed, **{"class": "low", "provider": {"preferred_max_latency": 2}})
        assert _slugs(p)[-1] == "cheap/small" and len(p.candidates) == 3
    p = _plan(catalog, live=live, **{"class": "low", "provider": {"preferred_min_throughput": {"p90": 50}}})
    assert _slugs(p)[-1] == "cheap/small"


def test_model_then_models_is_the_fallback_order(catalog: Catalog) -> None:
    p = _plan(catalog, **{"model": "large", "models": ["small", "large"]})
    assert [c.endpoint.model for c in p.candidates] == ["large", "large", "small", "small", "small"]


# ------------------------------------------------------------------------------------------ organisation policy
def test_the_job_narrows_the_organisation_policy_and_never_widens_it(catalog: Catalog) -> None:
    org = PolicyConfig(allow_providers=["cheap", "safe"], ignore_providers=["fast"], data_collection="deny")
    p = _plan(catalog, org, **{"provider": {"only": ["cheap", "fast", "big"], "data_collection": "allow"}})
    assert p.candidates == ()
    assert p.excluded["cheap/small"].why is Why.DATA_POLICY  # the job's "allow" does not lift the org's "deny"
    assert p.excluded["fast/small"].why is Why.POLICY
    assert p.excluded["big/large"].why is Why.POLICY
    assert p.excluded["safe/small"].why is Why.PREFERENCE  # not in the job's only
    assert set(_slugs(_plan(catalog, org))) == {"safe/small", "safe/large"}


def test_region_policy(catalog: Catalog) -> None:
    p = _plan(catalog, PolicyConfig(regions=["eu"]))
    assert {c.endpoint.provider for c in p.candidates} == {"safe"}


# ------------------------------------------------------------------------------------------ budgets and windows
def test_over_budget_downgrades_to_the_next_class_down(catalog: Catalog) -> None:
    p = _plan(catalog, **{"class": "high"})
    assert p.candidates and {c.endpoint.model for c in p.candidates} == {"small"}
    assert any("downgraded to class 'mid'" in n for n in p.notes)
    assert all(c.worst_case_cost is not None and c.worst_case_cost <= Decimal("0.01") for c in p.candidates)
    strict = _plan(catalog, **{"class": "strict"})
    assert strict.candidates == () and any("fails rather than downgrade" in n for n in strict.notes)


def test_context_window_and_output_limits(catalog: Catalog) -> None:
    p = _plan(catalog, **{"prompt": "word " * 8000, "max_tokens": 1500})
    assert {c.endpoint.slug for c in p.candidates} == {"big/large"}
    assert p.excluded["cheap/small"].why is Why.CONTEXT and p.excluded["safe/large"].why is Why.CONTEXT


def test_unpriced_endpoints_are_refused_unless_allowed_and_never_priced_at_zero() -> None:
    config = parse_config(WORLD)
    catalog = Catalog.from_config(config)
    from dataclasses import replace

    eps = dict(catalog.endpoints)
    eps["fast/small"] = replace(eps["fast/small"], price=None)
    by_model = {m: tuple(eps[e.slug] for e in v) for m, v in catalog.by_model.items()}
    unpriced = Catalog(config, eps, by_model)
    assert _plan(unpriced, **{"class": "low"}).excluded["fast/small"].why is Why.PRICE
    allow = PolicyConfig(allow_unpriced=True)
    p = _plan(unpriced, allow, **{"class": "low"})
    assert _slugs(p)[-1] == "fast/small" and p.candidates[-1].worst_case_cost is None
    # a max_cost or a remaining budget cannot be held against an unknown price
    assert _plan(unpriced, allow, **{"class": "low", "max_cost": "1"}).excluded["fast/small"].why is Why.PRICE
    live = LiveState(budget_remaining=Decimal(1))
    assert _plan(unpriced, allow, live, **{"class": "low"}).excluded["fast/small"].why is Why.PRICE


def test_health_and_remaining_budget_are_transient(catalog: Catalog) -> None:
    live = LiveState(unhealthy=frozenset({"cheap/small", "safe/small"}), disabled_providers=frozenset({"fast"}))
    p = _plan(catalog, live=live, **{"class": "low"})
    assert p.candidates == () and p.only_transient_exclusions
    p = _plan(catalog, live=LiveState(budget_remaining=Decimal("0.0000001")), **{"class": "low"})
    assert p.candidates == () and p.only_transient_exclusions
    assert {e.why for e in p.excluded.values()} == {Why.BUDGET_REMAINING}


def test_explain_and_error_say_why_per_endpoint(catalog: Catalog) -> None:
    p = _plan(catalog, **{"class": "low", "provider": {"only": ["cheap"], "data_collection": "deny"}})
    text = p.explain()
    assert "nothing can serve this job" in text and "cheap/small" in text and "may train on prompts" in text
    assert "fast/small" in text and "provider.only" in text
    err = str(p.error())
    assert "3 endpoint(s) considered" in err and "safe/small" in err
    ok = _plan(catalog, **{"class": "low"}).explain()
    assert "odds" in ok and "worst" in ok and "expected" in ok


# ------------------------------------------------------------------------------------------ submission
def _check(catalog: Catalog, **job: Any) -> JobSpec:
    return SpecChecker(catalog).check(JobSpec.model_validate({"prompt": "hello", **job}))


def _refused(catalog: Catalog, code: str, **job: Any) -> str:
    with pytest.raises(InputError) as info:
        _check(catalog, **job)
    assert info.value.code == code, info.value.message
    return info.value.message


def test_submission_refuses_unknown_names_with_the_known_ones(catalog: Catalog) -> None:
    assert "configured: cheap, safe, fast, big" in _refused(catalog, "unknown_provider", provider={"only": ["nope"]})
    assert "'nope'" in _refused(catalog, "unknown_model", model="nope")
    assert "':free'" in _refused(catalog, "unknown_model", model="small:free")
    _refused(catalog, "unknown_class", **{"class": "nope"})
    assert "enforce_distillable_text" in _refused(
        catalog, "invalid_request", provider={"enforce_distillable_text": True}
    )
    # endpoint slugs are valid provider names
    assert _check(catalog, provider={"ignore": ["safe/small"]}).provider is not None


def test_submission_refuses_a_max_price_below_every_endpoint_saying_why(catalog: Catalog) -> None:
    msg = _refused(catalog, "no_route", provider={"max_price": {"prompt": "0.01"}})
    assert "over max_price" in msg and "cheap/small" in msg and "above max_price $0.01/M" in msg


def test_submission_refuses_what_the_organisation_forbids() -> None:
    text = WORLD.replace(
        '[routing]\ndefault_class = "mid"', '[routing]\ndefault_class = "mid"\n[policy]\nignore_providers = ["cheap"]'
    )
    catalog = Catalog.from_config(parse_config(text))
    msg = _refused(catalog, "no_route", provider={"only": ["cheap"]})
    assert "organisation blocklist" in msg


def test_model_suffixes_and_provider_names_resolve(catalog: Catalog) -> None:
    spec = _check(catalog, model="vendor/small:floor")
    assert spec.models == ["small"] and spec.provider is not None and spec.provider.sort == "price"
    spec = _check(catalog, models=["small:nitro", "large"])
    assert spec.provider is not None and spec.provider.sort_by == "throughput"
    _refused(catalog, "invalid_request", model="small:floor", provider={"sort": "latency"})
    upstream = Catalog.from_config(
        parse_config(WORLD.replace('{ provider = "big",', '{ provider = "big", upstream_model = "big-v1:0",'))
    )
    assert _check(upstream, model="big-v1:0").models == ["large"]


def test_quantization_typos_are_refused_at_parse_time() -> None:
    with pytest.raises(ValueError, match="unknown quantization"):
        JobSpec.model_validate({"prompt": "x", "provider": {"quantizations": ["fp7"]}})


def test_first_choices_over_many_seeds_follow_the_odds(catalog: Catalog) -> None:
    """A quick sanity check; the statistical test is in test_router_properties."""
    counts = Counter(_slugs(_plan(catalog, seed=s, **{"class": "low"}))[0] for s in range(2000))
    assert counts.most_common(1)[0][0] == "cheap/small"


async def test_submission_checks_a_line_under_the_class_it_will_run_in(
    sqlite_store: Store, fake_redis: ArqRedis, key_prefix: str
) -> None:
    """`--class` fills in lines without one before they are checked, not after."""
    from producer.client import BatchOptions, Producer
    from shared.queue import JobQueue
    from shared.redis_keys import Keys

    producer = Producer(sqlite_store, JobQueue(fake_redis, Keys(key_prefix)), Catalog.from_config(make_config()))
    only_alpha = JobSpec.model_validate({"prompt": "x", "provider": {"only": ["alpha"]}})
    report = await producer.submit_specs([only_alpha], BatchOptions(default_class="bigonly"))
    [err] = report.errors
    assert err.code == "no_route" and "class 'bigonly'" in err.message
    assert (await producer.submit_specs([only_alpha], BatchOptions(default_class="basic"))).accepted == 1
