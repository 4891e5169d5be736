"""The router: a pure function from a job to an ordered plan of endpoints, with the reason every other
endpoint was left out.

    plan(job, catalog, policy, live_state, seed) -> Plan(candidates, excluded)

No I/O and no clock: everything it knows arrives as arguments, so the same inputs and seed always give the
same plan, `routeyard route --explain` shows exactly what the worker will do, and property tests can check
it. Semantics follow OpenRouter's (`models` as an ordered fallback list; `provider.order`, `only`,
`ignore`, `sort`, `max_price`, `data_collection`, `zdr`, `quantizations`, `require_parameters`,
`allow_fallbacks`), with the organisation's policy as the outer bound: a job can narrow it, never widen it.

Default strategy within a model: endpoints drawn at random, weighted by the inverse square of their price
for this job (OpenRouter's documented default), so the cheapest gets most traffic without starving the rest.
`sort` replaces the draw with price, latency or throughput order (the latter two from live statistics).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from shared.catalog import Catalog, Endpoint
from shared.config import PolicyConfig
from shared.errors import RoutingError
from shared.models import JobSpec, ProviderPreferences, estimate_input_tokens
from shared.money import MILLION

PRICE_FLOOR = Decimal("1e-12")
"""A free endpoint still gets a finite weight."""


class Why(StrEnum):
    """Kinds of exclusion. Some are permanent for the job (policy), some pass (health, remaining budget)."""

    POLICY = "policy"
    PREFERENCE = "preference"
    DATA_POLICY = "data_policy"
    PRICE = "price"
    CONTEXT = "context"
    PARAMETERS = "parameters"
    BUDGET = "budget"
    BUDGET_REMAINING = "budget_remaining"
    HEALTH = "health"
    UNKNOWN_MODEL = "unknown_model"

    @property
    def transient(self) -> bool:
        return self in (Why.HEALTH, Why.BUDGET_REMAINING)


@dataclass(frozen=True, slots=True)
class Exclusion:
    why: Why
    reason: str


@dataclass(frozen=True, slots=True)
class EndpointStats:
    latency_ms: float | None = None
    """EWMA of recorded call latency."""
    throughput_tps: float | None = None
    """EWMA of output tokens per second."""


@dataclass(frozen=True)
class LiveState:
    """What the router may know of the world right now; assembled by the worker, empty for a dry run."""

    unhealthy: frozenset[str] = frozenset()
    """Endpoints whose circuit breaker is open."""
    stats: Mapping[str, EndpointStats] = field(default_factory=dict)
    budget_remaining: Decimal | None = None
    """The tightest remaining spend (key limit, batch budget) this job may use; None = unlimited."""
    disabled_providers: frozenset[str] = frozenset()
    """Providers with no usable key (e.g. the key answered 401)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    endpoint: Endpoint
    worst_case_cost: Decimal | None
    expected_cost: Decimal | None
    note: str


@dataclass(frozen=True)
class Plan:
    class_name: str
    max_tokens: int
    max_cost: Decimal | None
    input_tokens: int
    candidates: tuple[Candidate, ...]
    excluded: dict[str, Exclusion]
    notes: tuple[str, ...] = ()

    @property
    def only_transient_exclusions(self) -> bool:
        """Nothing to call now, but only for reasons that pass (open circuits, budget period)."""
        return (
            not self.candidates
            and bool(self.excluded)
            and any(e.why.transient for e in self.excluded.values())
            and all(e.why.transient or e.why in (Why.POLICY, Why.PREFERENCE) for e in self.excluded.values())
        )

    def error(self) -> RoutingError:
        reasons = {slug: e.reason for slug, e in self.excluded.items()}
        return RoutingError(f"no endpoint can serve this job (class {self.class_name!r})", reasons)

    def explain(self) -> str:
        lines = [
            f"class {self.class_name}: max_tokens={self.max_tokens}, "
            f"max_cost={'none' if self.max_cost is None else f'${self.max_cost}'}, "
            f"~{self.input_tokens} input tokens"
        ]
        lines += [f"note: {n}" for n in self.notes]
        if self.candidates:
            lines.append("plan (tried in this order):")
            for i, c in enumerate(self.candidates, 1):
                worst = "unknown" if c.worst_case_cost is None else f"${c.worst_case_cost:.6f}"
                lines.append(f"  {i}. {c.endpoint.slug:<40} worst case {worst:>12}  {c.note}")
        else:
            lines.append("plan: nothing can serve this job")
        if self.excluded:
            lines.append("excluded:")
            for slug, e in sorted(self.excluded.items()):
                lines.append(f"  - {slug:<40} [{e.why.value}] {e.reason}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Policy:
    """The organisation's policy narrowed by the job's preferences."""

    allowed: frozenset[str] | None
    allowed_by: str
    ignored: dict[str, str]
    deny_data_collection: bool
    zdr: bool
    regions: frozenset[str] | None
    allow_unpriced: bool
    prefs: ProviderPreferences


def merge_policy(org: PolicyConfig, prefs: ProviderPreferences | None) -> _Policy:
    prefs = prefs or ProviderPreferences()
    allowed: set[str] | None = None if org.allow_providers is None else set(org.allow_providers)
    allowed_by = "organisation allowlist"
    if prefs.only is not None:
        allowed = set(prefs.only) if allowed is None else allowed & set(prefs.only)
        allowed_by = "provider.only" if org.allow_providers is None else "organisation allowlist and provider.only"
    ignored = {p: "organisation blocklist" for p in org.ignore_providers}
    for p in prefs.ignore or []:
        ignored.setdefault(p, "provider.ignore")
    return _Policy(
        allowed=None if allowed is None else frozenset(allowed),
        allowed_by=allowed_by,
        ignored=ignored,
        deny_data_collection=org.data_collection == "deny" or prefs.data_collection == "deny",
        zdr=org.zdr or bool(prefs.zdr),
        regions=None if org.regions is None else frozenset(org.regions),
        allow_unpriced=org.allow_unpriced,
        prefs=prefs,
    )


def job_seed(job_id: str, base: int | None = None) -> int:
    """A stable per-job seed: the same job always draws the same plan (for a given base seed)."""
    digest = hashlib.blake2b(f"{base}:{job_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def plan(
    spec: JobSpec,
    catalog: Catalog,
    policy: PolicyConfig,
    live: LiveState | None = None,
    *,
    seed: int = 0,
    input_tokens: int | None = None,
) -> Plan:
    live = live or LiveState()
    config = catalog.config
    class_name = spec.class_ or config.routing.default_class
    cls = catalog.classes.get(class_name)
    if cls is None:
        raise RoutingError(f"unknown class {class_name!r}; configured: {', '.join(sorted(catalog.classes))}")
    max_tokens = spec.max_tokens or cls.max_tokens
    max_cost = spec.max_cost if spec.max_cost is not None else cls.max_cost
    tokens_in = input_tokens if input_tokens is not None else estimate_input_tokens(spec)
    expected_out = max(1, int(max_tokens * cls.expected_output_ratio))
    merged = merge_policy(policy, spec.provider)
    rng = random.Random(seed)
    excluded: dict[str, Exclusion] = {}
    notes: list[str] = []

    explicit = spec.requested_models()
    model_ids = explicit if explicit is not None else list(cls.models)
    candidates = _candidates_for(
        model_ids, catalog, merged, live, spec, tokens_in, max_tokens, expected_out, max_cost, rng, excluded
    )

    if not candidates and explicit is None and cls.over_budget == "downgrade":
        over_budget = [s for s, e in excluded.items() if e.why is Why.BUDGET]
        if over_budget:
            ladder = _lower_classes(catalog, class_name)
            tried = set(model_ids)
            for lower in ladder:
                more = [m for m in catalog.classes[lower].models if m not in tried]
                tried.update(more)
                found = _candidates_for(
                    more, catalog, merged, live, spec, tokens_in, max_tokens, expected_out, max_cost, rng, excluded
                )
                if found:
                    notes.append(
                        f"downgraded to class {lower!r}: every {class_name!r} model's worst case is above max_cost"
                    )
                    candidates = [
                        Candidate(c.endpoint, c.worst_case_cost, c.expected_cost, f"downgrade ({lower}); {c.note}")
                        for c in found
                    ]
                    break
    elif not candidates and cls.over_budget == "fail" and any(e.why is Why.BUDGET for e in excluded.values()):
        notes.append(f"class {class_name!r} fails rather than downgrade when over budget")

    return Plan(class_name, max_tokens, max_cost, tokens_in, tuple(candidates), excluded, tuple(notes))


def _lower_classes(catalog: Catalog, class_name: str) -> list[str]:
    """Classes configured before this one, nearest first: the config's order is its ladder."""
    names = list(catalog.classes)
    return list(reversed(names[: names.index(class_name)]))


def _candidates_for(
    model_ids: list[str],
    catalog: Catalog,
    policy: _Policy,
    live: LiveState,
    spec: JobSpec,
    tokens_in: int,
    max_tokens: int,
    expected_out: int,
    max_cost: Decimal | None,
    rng: random.Random,
    excluded: dict[str, Exclusion],
) -> list[Candidate]:
    out: list[Candidate] = []
    used_params = set(spec.sampling_params()) | {"max_tokens"}
    for rank, model_id in enumerate(model_ids):
        endpoints = catalog.by_model.get(model_id)
        if endpoints is None:
            excluded[model_id] = Exclusion(Why.UNKNOWN_MODEL, f"model {model_id!r} is not in the catalog")
            continue
        eligible: list[tuple[Endpoint, Decimal | None, Decimal | None]] = []
        for ep in endpoints:
            why = _exclusion(ep, policy, live, used_params, tokens_in, max_tokens)
            worst = ep.worst_case_cost(tokens_in, max_tokens)
            if why is None and max_cost is not None and worst is not None and worst > max_cost:
                why = Exclusion(Why.BUDGET, f"worst case ${worst:.6f} is above max_cost ${max_cost}")
            if why is None and live.budget_remaining is not None and (worst or 0) > live.budget_remaining:
                why = Exclusion(
                    Why.BUDGET_REMAINING,
                    f"worst case ${worst or 0:.6f} is above the remaining budget ${live.budget_remaining:.6f}",
                )
            if why is not None:
                excluded[ep.slug] = why
                continue
            eligible.append((ep, worst, ep.cost(tokens_in, expected_out)))
        ordered = _order(eligible, policy.prefs, live, rng, excluded)
        label = "primary model" if rank == 0 else f"fallback model {rank + 1}"
        for i, (ep, worst, expected) in enumerate(ordered):
            out.append(Candidate(ep, worst, expected, f"{label}, choice {i + 1} of {len(ordered)}"))
    return out


def _exclusion(
    ep: Endpoint,
    policy: _Policy,
    live: LiveState,
    used_params: set[str],
    tokens_in: int,
    max_tokens: int,
) -> Exclusion | None:
    prefs = policy.prefs
    if ep.provider in policy.ignored:
        source = policy.ignored[ep.provider]
        kind = Why.POLICY if source.startswith("organisation") else Why.PREFERENCE
        return Exclusion(kind, f"provider {ep.provider!r} is blocked by {source}")
    if policy.allowed is not None and ep.provider not in policy.allowed:
        kind = Why.POLICY if policy.allowed_by.startswith("organisation") else Why.PREFERENCE
        return Exclusion(kind, f"provider {ep.provider!r} is not allowed by {policy.allowed_by}")
    if policy.regions is not None and ep.region not in policy.regions:
        return Exclusion(Why.POLICY, f"region {ep.region!r} is not among the allowed {sorted(policy.regions)}")
    if policy.deny_data_collection and ep.data_collection == "allow":
        return Exclusion(Why.DATA_POLICY, "the provider may train on prompts (data_collection: deny)")
    if policy.zdr and not ep.zdr:
        return Exclusion(Why.DATA_POLICY, "the endpoint retains prompts (zero data retention required)")
    if prefs.quantizations is not None and (ep.quantization or "unknown") not in prefs.quantizations:
        return Exclusion(
            Why.PREFERENCE, f"quantization {ep.quantization or 'unknown'!r} is not in {prefs.quantizations}"
        )
    if prefs.require_parameters and ep.supported_parameters is not None:
        missing = sorted(used_params - ep.supported_parameters)
        if missing:
            return Exclusion(Why.PARAMETERS, f"does not support {', '.join(missing)} (require_parameters)")
    if ep.price is None:
        if not policy.allow_unpriced:
            return Exclusion(Why.PRICE, "price unknown (set policy.allow_unpriced to route here)")
        if prefs.max_price is not None:
            return Exclusion(Why.PRICE, "price unknown and max_price is set")
    elif prefs.max_price is not None:
        mp = prefs.max_price
        if mp.prompt is not None and ep.price.input > mp.prompt:
            return Exclusion(Why.PRICE, f"prompt price ${ep.price.input}/M is above max_price ${mp.prompt}/M")
        if mp.completion is not None and ep.price.output > mp.completion:
            return Exclusion(Why.PRICE, f"completion price ${ep.price.output}/M is above max_price ${mp.completion}/M")
    if tokens_in + max_tokens > ep.context_length:
        return Exclusion(
            Why.CONTEXT, f"context window {ep.context_length} < {tokens_in} input + {max_tokens} output tokens"
        )
    if ep.max_output_tokens is not None and max_tokens > ep.max_output_tokens:
        return Exclusion(Why.CONTEXT, f"max_tokens {max_tokens} is above the endpoint's {ep.max_output_tokens}")
    if ep.provider in live.disabled_providers:
        return Exclusion(Why.HEALTH, f"no usable key for {ep.provider!r}")
    if ep.slug in live.unhealthy:
        return Exclusion(Why.HEALTH, "circuit open: recent calls failed")
    return None


_Eligible = tuple[Endpoint, Decimal | None, Decimal | None]


def _order(
    eligible: list[_Eligible],
    prefs: ProviderPreferences,
    live: LiveState,
    rng: random.Random,
    excluded: dict[str, Exclusion],
) -> list[_Eligible]:
    head: list[_Eligible] = []
    rest = eligible
    if prefs.order:
        rank = {p: i for i, p in enumerate(prefs.order)}
        head = sorted((e for e in eligible if e[0].provider in rank), key=lambda e: rank[e[0].provider])
        rest = [e for e in eligible if e[0].provider not in rank]
        if not prefs.allow_fallbacks:
            for ep, _, _ in rest:
                excluded[ep.slug] = Exclusion(Why.PREFERENCE, "not in provider.order and allow_fallbacks is false")
            return head
    ordered = head + _strategy(rest, prefs, live, rng)
    if not prefs.allow_fallbacks and ordered:
        for ep, _, _ in ordered[1:]:
            excluded[ep.slug] = Exclusion(Why.PREFERENCE, "allow_fallbacks is false: only the first choice is used")
        return ordered[:1]
    return ordered


def _strategy(
    eligible: list[_Eligible], prefs: ProviderPreferences, live: LiveState, rng: random.Random
) -> list[_Eligible]:
    if not eligible:
        return []

    def price_key(e: _Eligible) -> tuple[int, Decimal, str]:
        return (0, e[2], e[0].slug) if e[2] is not None else (1, Decimal(0), e[0].slug)

    if prefs.sort == "price":
        return sorted(eligible, key=price_key)
    if prefs.sort in ("latency", "throughput"):

        def live_key(e: _Eligible) -> tuple[int, float, tuple[int, Decimal, str]]:
            st = live.stats.get(e[0].slug)
            value = None if st is None else (st.latency_ms if prefs.sort == "latency" else st.throughput_tps)
            if value is None:
                return (1, 0.0, price_key(e))
            return (0, value if prefs.sort == "latency" else -value, price_key(e))

        return sorted(eligible, key=live_key)
    return weighted_order(eligible, rng)


def weighted_order(eligible: list[_Eligible], rng: random.Random) -> list[_Eligible]:
    """Sample without replacement, each draw weighted by 1 / price²; unpriced endpoints go last."""
    priced = sorted((e for e in eligible if e[2] is not None), key=lambda e: e[0].slug)
    unpriced = sorted((e for e in eligible if e[2] is None), key=lambda e: e[0].slug)
    weights = [1.0 / float(max(e[2] or Decimal(0), PRICE_FLOOR)) ** 2 for e in priced]
    out: list[_Eligible] = []
    while priced:
        total = sum(weights)
        pick = rng.random() * total
        acc = 0.0
        idx = len(priced) - 1
        for i, w in enumerate(weights):
            acc += w
            if pick < acc:
                idx = i
                break
        out.append(priced.pop(idx))
        weights.pop(idx)
    return out + unpriced


def price_per_million(ep: Endpoint) -> tuple[Decimal, Decimal] | None:
    if ep.price is None:
        return None
    return ep.price.input, ep.price.output


def expected_cost(ep: Endpoint, input_tokens: int, output_tokens: int) -> Decimal | None:
    if ep.price is None:
        return None
    return (input_tokens * ep.price.input + output_tokens * ep.price.output) / MILLION
