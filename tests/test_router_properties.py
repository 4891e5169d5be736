"""Properties of the planner over generated catalogs, organisation policies and job preferences, and a
statistical test of the default load balancing (inverse square of the price)."""

from __future__ import annotations

import math
from collections import Counter
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.catalog import Catalog, Endpoint, Price
from shared.config import ClassConfig, ModelConfig, PolicyConfig, ProviderConfig, RouteyardConfig
from shared.models import JobSpec
from worker.router import Candidate, EndpointStats, LiveState, Plan, Why, matches, plan

PROVIDERS = ["p0", "p1", "p2", "p3", "p4"]
MODELS = ["m0", "m1", "m2", "m3"]
PRICES = [Decimal(x) for x in ("0", "0.05", "0.1", "0.5", "1", "3", "15")]
QUANTS = [None, "fp8", "bf16", "int4"]


def _sometimes(draw: st.DrawFn, p: float = 0.25) -> bool:
    """True with probability about `p` (hypothesis biases numbers toward 0, so draw from a list that starts
    with False: shrinking then simplifies toward "off")."""
    n = round(1 / p)
    return draw(st.sampled_from([False] * (n - 1) + [True]))


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Catalog, PolicyConfig]:
    providers = {
        p: ProviderConfig(
            base_url=f"sim://{p}",
            data_collection=draw(st.sampled_from(["allow", "deny"])),
            zdr=draw(st.booleans()),
            region=draw(st.sampled_from(["us", "eu"])),
        )
        for p in PROVIDERS
    }
    endpoints: dict[str, Endpoint] = {}
    by_model: dict[str, tuple[Endpoint, ...]] = {}
    for m in MODELS:
        provs = draw(st.lists(st.sampled_from(PROVIDERS), min_size=1, max_size=4, unique=True))
        context = draw(st.sampled_from([1000, 4000, 32000, 200000]))
        eps = []
        for p in provs:
            priced = not _sometimes(draw, 0.1)
            price = (
                Price(draw(st.sampled_from(PRICES)), draw(st.sampled_from(PRICES)), None, "config") if priced else None
            )
            params = draw(st.one_of(st.none(), st.sets(st.sampled_from(["max_tokens", "temperature", "tools"]))))
            ep = Endpoint(
                slug=f"{p}/{m}",
                model=m,
                provider=p,
                upstream_model=m,
                wire="openai",
                price=price,
                context_length=draw(st.sampled_from([context, context // 2])),
                max_output_tokens=draw(st.sampled_from([None, None, 256, 4096])),
                quantization=draw(st.sampled_from(QUANTS)),
                data_collection="allow" if _sometimes(draw, 0.3) else "deny",
                zdr=_sometimes(draw, 0.5),
                region=providers[p].region,
                supported_parameters=None if params is None else frozenset(params),
            )
            eps.append(ep)
            endpoints[ep.slug] = ep
        by_model[m] = tuple(eps)
    classes = {
        name: ClassConfig(
            models=draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=3, unique=True)),
            max_tokens=draw(st.sampled_from([64, 512, 2048])),
            max_cost=draw(st.sampled_from([None, None, Decimal("0.0005"), Decimal("0.05")])),
            over_budget=draw(st.sampled_from(["downgrade", "fail"])),
        )
        for name in ("c0", "c1", "c2")
    }
    models_cfg = {
        m: ModelConfig(context_length=1000, endpoints=[{"provider": e.provider} for e in by_model[m]]) for m in MODELS
    }
    policy = PolicyConfig(
        allow_providers=draw(st.lists(st.sampled_from(PROVIDERS), min_size=2, unique=True))
        if _sometimes(draw)
        else None,
        ignore_providers=draw(st.lists(st.sampled_from(PROVIDERS), max_size=1 if _sometimes(draw) else 0)),
        data_collection="deny" if _sometimes(draw) else "allow",
        zdr=_sometimes(draw, 0.1),
        regions=["eu"] if _sometimes(draw, 0.1) else None,
        allow_unpriced=draw(st.booleans()),
    )
    config = RouteyardConfig(
        routing={"default_class": "c0"},
        policy=policy,
        providers=providers,
        models=models_cfg,
        classes=classes,
    )
    return Catalog(config, endpoints, by_model), policy


NAMES = st.sampled_from([*PROVIDERS, "p0/m0", "p1/m1", "P2", "p3/m2"])


@st.composite
def jobs(draw: st.DrawFn) -> JobSpec:
    prefs: dict[str, Any] = {}
    if _sometimes(draw):
        prefs["order"] = draw(st.lists(NAMES, max_size=3, unique=True))
    if _sometimes(draw):
        prefs["only"] = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    if _sometimes(draw):
        prefs["ignore"] = draw(st.lists(NAMES, max_size=2, unique=True))
    if _sometimes(draw):
        prefs["allow_fallbacks"] = False
    if _sometimes(draw, 0.5):
        prefs["sort"] = draw(st.sampled_from(["price", "latency", "throughput", {"by": "price", "partition": "none"}]))
    if _sometimes(draw):
        prefs["max_price"] = {
            k: str(draw(st.sampled_from(PRICES))) for k in draw(st.sets(st.sampled_from(["prompt", "completion"])))
        }
    if _sometimes(draw):
        prefs["data_collection"] = draw(st.sampled_from(["allow", "deny"]))
    if _sometimes(draw, 0.15):
        prefs["zdr"] = True
    if _sometimes(draw, 0.15):
        prefs["quantizations"] = draw(st.lists(st.sampled_from(["fp8", "bf16", "int4", "unknown"]), min_size=1))
    if _sometimes(draw, 0.15):
        prefs["require_parameters"] = True
    job: dict[str, Any] = {
        "prompt": "x" * draw(st.sampled_from([1, 40, 400, 6000, 40000])),
        "class": draw(st.sampled_from(["c0", "c1", "c2"])),
        "provider": prefs,
    }
    if _sometimes(draw):
        job["models"] = draw(st.lists(st.sampled_from([*MODELS, "nope"]), min_size=1, max_size=3))
    if _sometimes(draw):
        job["max_tokens"] = draw(st.sampled_from([16, 300, 3000]))
    if _sometimes(draw):
        job["max_cost"] = str(draw(st.sampled_from(["0.00001", "0.001", "0.1"])))
    if _sometimes(draw):
        job["temperature"] = 0.3
    if _sometimes(draw, 0.15):
        job["tools"] = [{"type": "function", "function": {"name": "f"}}]
    return JobSpec.model_validate(job)


STATS = st.dictionaries(
    st.sampled_from([f"{p}/{m}" for p in PROVIDERS for m in MODELS]),
    st.builds(EndpointStats, st.floats(1, 5000), st.floats(1, 500)),
    max_size=6,
)


def _allowed_by_org(ep: Endpoint, org: PolicyConfig) -> bool:
    return (
        ep.provider not in org.ignore_providers
        and (org.allow_providers is None or ep.provider in org.allow_providers)
        and (org.regions is None or ep.region in org.regions)
        and not (org.data_collection == "deny" and ep.data_collection == "allow")
        and not (org.zdr and not ep.zdr)
        and (ep.price is not None or org.allow_unpriced)
    )


def _check_invariants(spec: JobSpec, catalog: Catalog, org: PolicyConfig, p: Plan, live: LiveState) -> None:
    prefs = spec.provider
    assert prefs is not None
    cls = catalog.classes[spec.class_ or "c0"]
    max_cost = spec.max_cost if spec.max_cost is not None else cls.max_cost
    slugs = [c.endpoint.slug for c in p.candidates]
    assert len(slugs) == len(set(slugs)), "an endpoint appears twice"
    for c in p.candidates:
        ep = c.endpoint
        assert c.endpoint.slug not in p.excluded
        # the organisation's policy holds whatever the job asked for
        assert _allowed_by_org(ep, org)
        # the job's preferences hold
        assert not any(matches(n, ep) for n in prefs.ignore or [])
        if prefs.only is not None:
            assert any(matches(n, ep) for n in prefs.only)
        if prefs.max_price is not None:
            assert ep.price is not None
            assert prefs.max_price.prompt is None or ep.price.input <= prefs.max_price.prompt
            assert prefs.max_price.completion is None or ep.price.output <= prefs.max_price.completion
        if prefs.data_collection == "deny":
            assert ep.data_collection == "deny"
        if prefs.zdr:
            assert ep.zdr
        if prefs.quantizations is not None:
            assert (ep.quantization or "unknown") in prefs.quantizations
        if prefs.require_parameters and ep.supported_parameters is not None:
            assert set(spec.sampling_params()) | {"max_tokens"} <= ep.supported_parameters
        # budgets and windows
        if max_cost is not None:
            assert c.worst_case_cost is not None and c.worst_case_cost <= max_cost
        assert p.input_tokens + p.max_tokens <= ep.context_length
        assert ep.max_output_tokens is None or p.max_tokens <= ep.max_output_tokens
        assert ep.slug not in live.unhealthy
    # every endpoint of every model considered is a candidate or has a reason
    considered = spec.requested_models() or cls.models
    for m in considered:
        if m not in catalog.by_model:
            assert p.excluded[m].why is Why.UNKNOWN_MODEL
            continue
        for ep in catalog.by_model[m]:
            assert ep.slug in slugs or ep.slug in p.excluded, ep.slug
    for e in p.excluded.values():
        assert e.reason
    if p.candidates:
        assert math.isclose(sum(c.first_odds for c in p.candidates), 1.0, rel_tol=1e-9)
        if not prefs.allow_fallbacks:
            assert {c.endpoint.model for c in p.candidates} <= set(considered) | set(catalog.by_model)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), jobs(), STATS, st.integers(0, 2**32), st.frozensets(st.sampled_from([f"{p}/m0" for p in PROVIDERS])))
def test_plans_respect_policy_preferences_budgets_and_windows(
    world: tuple[Catalog, PolicyConfig], spec: JobSpec, stats: dict[str, Any], seed: int, unhealthy: frozenset[str]
) -> None:
    catalog, org = world
    live = LiveState(stats=stats, unhealthy=unhealthy)
    p = plan(spec, catalog, org, live, seed=seed)
    _check_invariants(spec, catalog, org, p, live)
    again = plan(spec, catalog, org, live, seed=seed)
    assert [c.endpoint.slug for c in again.candidates] == [c.endpoint.slug for c in p.candidates]
    assert again.excluded == p.excluded
    # preferences only narrow: at the same step of the class ladder, the job's candidates are a subset of
    # what the organisation's policy alone allows (tools/response_format aside: that soft preference only
    # applies among the endpoints left, so narrowing can bring back one that ignores the parameter)
    bare = plan(spec.model_copy(update={"provider": None}), catalog, org, live, seed=seed)
    if bare.notes == p.notes and spec.tools is None:
        assert {c.endpoint.slug for c in p.candidates} <= {c.endpoint.slug for c in bare.candidates}


# ------------------------------------------------------------------------------------------ load balancing
def _balanced_world() -> Catalog:
    providers = {p: ProviderConfig(base_url=f"sim://{p}") for p in PROVIDERS[:4]}
    prices = {"p0": "1", "p1": "2", "p2": "3", "p3": "4"}
    eps = tuple(
        Endpoint(
            slug=f"{p}/m",
            model="m",
            provider=p,
            upstream_model="m",
            wire="openai",
            price=Price(Decimal(x), Decimal(x), None, "config"),
            context_length=100000,
        )
        for p, x in prices.items()
    )
    config = RouteyardConfig(
        routing={"default_class": "c"},
        providers=providers,
        models={"m": ModelConfig(context_length=100000, endpoints=[{"provider": p} for p in prices])},
        classes={"c": ClassConfig(models=["m"], max_tokens=100)},
    )
    return Catalog(config, {e.slug: e for e in eps}, {"m": eps})


def _chi_square(observed: Counter[str], expected: dict[str, float]) -> float:
    return sum((observed[k] - e) ** 2 / e for k, e in expected.items())


def test_default_load_balancing_follows_inverse_square_of_price() -> None:
    """Prices 1 : 2 : 3 : 4 give first-choice weights 1 : 1/4 : 1/9 : 1/16. Seeds are fixed, so the test is
    deterministic; the bound is the chi-square critical value at p = 0.001 with 3 degrees of freedom (16.27),
    which a faithful sampler exceeds for one seed range in a thousand."""
    catalog = _balanced_world()
    spec = JobSpec(prompt="x")
    n = 8000
    first: Counter[str] = Counter()
    second_after_p0: Counter[str] = Counter()
    for seed in range(n):
        cands: tuple[Candidate, ...] = plan(spec, catalog, catalog.config.policy, seed=seed, input_tokens=10).candidates
        first[cands[0].endpoint.provider] += 1
        if cands[0].endpoint.provider == "p0":
            second_after_p0[cands[1].endpoint.provider] += 1
    w = {"p0": 1.0, "p1": 1 / 4, "p2": 1 / 9, "p3": 1 / 16}
    total = sum(w.values())
    assert _chi_square(first, {k: n * v / total for k, v in w.items()}) < 16.27, first
    # without replacement: after p0, the next is drawn from the rest by the same weights
    rest = {k: v for k, v in w.items() if k != "p0"}
    m = sum(second_after_p0.values())
    assert _chi_square(second_after_p0, {k: m * v / sum(rest.values()) for k, v in rest.items()}) < 13.82
    # and the odds the planner reports are exactly those weights
    odds = {c.endpoint.provider: c.first_odds for c in plan(spec, catalog, catalog.config.policy).candidates}
    assert all(math.isclose(odds[k], w[k] / total, rel_tol=1e-9) for k in w)
