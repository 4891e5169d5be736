"""The router: a pure function from a job to an ordered plan of endpoints, with the reason every other
endpoint was left out.

    plan(job, catalog, policy, live_state, seed) -> Plan(candidates, excluded)

No I/O and no clock: everything it knows arrives as arguments, so the same inputs and seed always give the
same plan, `routeyard route --explain` shows exactly what the worker will do, and property tests can check
it. Semantics follow OpenRouter's provider routing (`model` then `models` as an ordered fallback list;
`provider.order`, `only`, `ignore`, `sort` (string or `{by, partition}`), `max_price`, `data_collection`,
`zdr`, `quantizations`, `require_parameters`, `allow_fallbacks`, `preferred_min_throughput`,
`preferred_max_latency`), with the organisation's policy as the outer bound: a job can narrow it, never
widen it. Deliberate differences are listed in the README's routing section.

Default strategy within a model: endpoints drawn at random, weighted by the inverse square of their price
for this job (OpenRouter's documented default), so the cheapest gets most traffic without starving the rest.
`sort` or `order` replace the draw with a fixed order (price, latency or throughput; latency and throughput
from live statistics). `Candidate.first_odds` is each endpoint's chance of being tried first under the draw,
which is what `routeyard estimate` prices.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

from shared.catalog import Catalog, Endpoint
from shared.config import PolicyConfig
from shared.errors import RoutingError
from shared.models import (
    JobSpec,
    PercentileCutoffs,
    ProviderPreferences,
    estimate_input_tokens,
    expected_input_tokens,
)

PRICE_FLOOR = Decimal("1e-12")
"""A free endpoint still gets a finite weight."""
SOFT_PARAMETERS = ("tools", "response_format")
"""Parameters an endpoint of the same model must support when another one does, even without
`require_parameters` (OpenRouter's "default parameter preferences")."""


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

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Why.POLICY: "blocked by the organisation's policy",
    Why.PREFERENCE: "left out by the job's provider preferences",
    Why.DATA_POLICY: "outside the data policy (training or retention)",
    Why.PRICE: "over max_price or unpriced",
    Why.CONTEXT: "too small a context window or output limit",
    Why.PARAMETERS: "missing a required parameter",
    Why.BUDGET: "worst case above max_cost",
    Why.BUDGET_REMAINING: "worst case above the remaining budget",
    Why.HEALTH: "unhealthy or without a usable key",
    Why.UNKNOWN_MODEL: "unknown model",
}


@dataclass(frozen=True, slots=True)
class Exclusion:
    why: Why
    reason: str


@dataclass(frozen=True, slots=True)
class EndpointStats:
    latency_ms: float | None = None
    """Mean (EWMA) latency of recorded calls."""
    throughput_tps: float | None = None
    """Mean (EWMA) output tokens per second."""


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
    first_odds: float = 0.0
    """The chance that this endpoint is the one tried first, over the load-balancing draw (1.0 when the
    order is fixed by `order` or `sort`). Odds are the same for every seed; the seed picks the outcome."""


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

    def first_choice(self) -> list[tuple[Candidate, float]]:
        """Where the first call goes, with its odds (they sum to 1 when there is a candidate)."""
        return [(c, c.first_odds) for c in self.candidates if c.first_odds > 0]

    def summary(self) -> str:
        """One line on why nothing is left: how many endpoints fell to each kind of reason."""
        counts = Counter(e.why for e in self.excluded.values())
        if not counts:
            return "no endpoint is configured for it"
        parts = [f"{why.label} ({n})" for why, n in counts.most_common()]
        return f"{sum(counts.values())} endpoint(s) considered, excluded as " + "; ".join(parts)

    def error(self) -> RoutingError:
        reasons = {slug: e.reason for slug, e in self.excluded.items()}
        return RoutingError(f"no endpoint can serve this job (class {self.class_name!r}): {self.summary()}", reasons)

    def explain(self) -> str:
        lines = [
            f"class {self.class_name}: max_tokens={self.max_tokens}, "
            f"max_cost={'none' if self.max_cost is None else f'${self.max_cost}'}, "
            f"~{self.input_tokens} input tokens (upper estimate)"
        ]
        lines += [f"note: {n}" for n in self.notes]
        if self.candidates:
            lines.append("plan (tried in this order; odds = chance of being tried first):")
            for i, c in enumerate(self.candidates, 1):
                worst = "unknown" if c.worst_case_cost is None else f"${c.worst_case_cost:.6f}"
                expected = "unknown" if c.expected_cost is None else f"${c.expected_cost:.6f}"
                odds = f"{c.first_odds:6.1%}" if c.first_odds > 0 else "     -"
                lines.append(
                    f"  {i}. {c.endpoint.slug:<34} worst {worst:>10}  expected {expected:>10}  odds {odds}  {c.note}"
                )
        else:
            lines.append(f"plan: nothing can serve this job — {self.summary()}")
        if self.excluded:
            lines.append("excluded:")
            for slug, e in sorted(self.excluded.items()):
                lines.append(f"  - {slug:<34} [{e.why.value}] {e.reason}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Policy:
    """The organisation's policy narrowed by the job's preferences."""

    allowed: tuple[frozenset[str], ...]
    """Every set must admit the endpoint (organisation allowlist, provider.only); empty tuple: no limit."""
    allowed_by: tuple[str, ...]
    ignored: dict[str, str]
    """Provider or endpoint slug → who blocks it."""
    deny_data_collection: bool
    zdr: bool
    regions: frozenset[str] | None
    allow_unpriced: bool
    prefs: ProviderPreferences


def matches(name: str, ep: Endpoint) -> bool:
    """Does a slug from `order`/`only`/`ignore` name this endpoint? A provider slug names all its endpoints,
    `provider/model` one of them (OpenRouter's base-slug matching); case does not matter."""
    name = name.lower()
    return name == ep.provider.lower() or name == ep.slug.lower()


def merge_policy(org: PolicyConfig, prefs: ProviderPreferences | None) -> _Policy:
    """The job's preferences inside the organisation's policy: allowlists intersect, blocklists add up, data
    rules and region limits only tighten. Nothing in a job's preferences can widen the organisation's."""
    prefs = prefs or ProviderPreferences()
    allowed: list[frozenset[str]] = []
    allowed_by: list[str] = []
    if org.allow_providers is not None:
        allowed.append(frozenset(p.lower() for p in org.allow_providers))
        allowed_by.append("the organisation allowlist")
    if prefs.only is not None:
        allowed.append(frozenset(prefs.only))
        allowed_by.append("provider.only")
    ignored = {p.lower(): "the organisation blocklist" for p in org.ignore_providers}
    for p in prefs.ignore or []:
        ignored.setdefault(p, "provider.ignore")
    return _Policy(
        allowed=tuple(allowed),
        allowed_by=tuple(allowed_by),
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


@dataclass(slots=True)
class _Ctx:
    """What every step of one planning call shares."""

    catalog: Catalog
    policy: _Policy
    live: LiveState
    used_params: frozenset[str]
    tokens_in: int
    """Upper estimate: worst cases, context checks."""
    expected_in: int
    """Expected count: the job's expected cost at each endpoint (the draw's weights, `sort: price`)."""
    max_tokens: int
    expected_out: int
    max_cost: Decimal | None
    rng: random.Random
    excluded: dict[str, Exclusion]


@dataclass(frozen=True, slots=True)
class _Eligible:
    ep: Endpoint
    worst: Decimal | None
    expected: Decimal | None
    model_rank: int


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
    tokens_in = input_tokens if input_tokens is not None else estimate_input_tokens(spec)
    ctx = _Ctx(
        expected_in=round(expected_input_tokens(spec)),
        catalog=catalog,
        policy=merge_policy(policy, spec.provider),
        live=live,
        used_params=frozenset(spec.sampling_params()) | {"max_tokens"},
        tokens_in=tokens_in,
        max_tokens=max_tokens,
        expected_out=max(1, int(max_tokens * cls.expected_output_ratio)),
        max_cost=spec.max_cost if spec.max_cost is not None else cls.max_cost,
        rng=random.Random(seed),
        excluded={},
    )
    notes: list[str] = []

    explicit = spec.requested_models()
    model_ids = list(dict.fromkeys(explicit if explicit is not None else cls.models))
    candidates = _candidates_for(model_ids, ctx)

    if not candidates and explicit is None and cls.over_budget == "downgrade":
        if any(e.why is Why.BUDGET for e in ctx.excluded.values()):
            tried = set(model_ids)
            for lower in _lower_classes(catalog, class_name):
                more = [m for m in dict.fromkeys(catalog.classes[lower].models) if m not in tried]
                tried.update(more)
                found = _candidates_for(more, ctx)
                if found:
                    notes.append(
                        f"downgraded to class {lower!r}: every {class_name!r} model's worst case is above max_cost"
                    )
                    candidates = [replace(c, note=f"downgrade ({lower}); {c.note}") for c in found]
                    break
    elif not candidates and cls.over_budget == "fail" and any(e.why is Why.BUDGET for e in ctx.excluded.values()):
        notes.append(f"class {class_name!r} fails rather than downgrade when over budget")

    return Plan(class_name, max_tokens, ctx.max_cost, tokens_in, tuple(candidates), ctx.excluded, tuple(notes))


def _lower_classes(catalog: Catalog, class_name: str) -> list[str]:
    """Classes configured before this one, nearest first: the config's order is its ladder."""
    names = list(catalog.classes)
    return list(reversed(names[: names.index(class_name)]))


def _candidates_for(model_ids: list[str], ctx: _Ctx) -> list[Candidate]:
    groups: list[list[_Eligible]] = []
    for rank, model_id in enumerate(model_ids):
        endpoints = ctx.catalog.by_model.get(model_id)
        if endpoints is None:
            ctx.excluded[model_id] = Exclusion(Why.UNKNOWN_MODEL, f"model {model_id!r} is not in the catalog")
            continue
        eligible: list[_Eligible] = []
        for ep in endpoints:
            worst = ep.worst_case_cost(ctx.tokens_in, ctx.max_tokens)
            why = _exclusion(ep, ctx) or _budget_exclusion(worst, ctx)
            if why is not None:
                ctx.excluded[ep.slug] = why
                continue
            eligible.append(_Eligible(ep, worst, ep.cost(ctx.expected_in, ctx.expected_out), rank))
        groups.append(_soft_parameters(eligible, ctx))

    prefs = ctx.policy.prefs
    label = {rank: "primary model" if rank == 0 else f"fallback model {rank + 1}" for rank in range(len(model_ids))}
    out: list[Candidate] = []
    if prefs.sort_partition == "none" and prefs.sort_by is not None:
        pooled = [e for g in groups for e in g]
        ordered, odds = _order(pooled, ctx)
        for i, e in enumerate(ordered):
            note = f"{label[e.model_rank]}, choice {i + 1} of {len(ordered)} (sorted across models)"
            out.append(Candidate(e.ep, e.worst, e.expected, note, odds.get(e.ep.slug, 0.0)))
        return out
    for group in groups:
        ordered, odds = _order(group, ctx)
        if out:
            odds = {}  # only the first non-empty model can be tried first
        for i, e in enumerate(ordered):
            note = f"{label[e.model_rank]}, choice {i + 1} of {len(ordered)}"
            out.append(Candidate(e.ep, e.worst, e.expected, note, odds.get(e.ep.slug, 0.0)))
    return out


def _exclusion(ep: Endpoint, ctx: _Ctx) -> Exclusion | None:
    policy, prefs, live = ctx.policy, ctx.policy.prefs, ctx.live
    for name, source in policy.ignored.items():
        if matches(name, ep):
            kind = Why.POLICY if source.startswith("the organisation") else Why.PREFERENCE
            return Exclusion(kind, f"{name!r} is blocked by {source}")
    for allowed, source in zip(policy.allowed, policy.allowed_by, strict=True):
        if not any(matches(name, ep) for name in allowed):
            kind = Why.POLICY if source.startswith("the organisation") else Why.PREFERENCE
            return Exclusion(kind, f"provider {ep.provider!r} is not allowed by {source}")
    if policy.regions is not None and ep.region not in policy.regions:
        return Exclusion(Why.POLICY, f"region {ep.region!r} is not among the allowed {sorted(policy.regions)}")
    if policy.deny_data_collection and ep.data_collection == "allow":
        return Exclusion(Why.DATA_POLICY, "the provider may train on prompts (data_collection: deny)")
    if policy.zdr and not ep.zdr:
        return Exclusion(Why.DATA_POLICY, "the endpoint retains prompts (zero data retention required)")
    if prefs.quantizations is not None and (ep.quantization or "unknown").lower() not in prefs.quantizations:
        return Exclusion(
            Why.PREFERENCE, f"quantization {ep.quantization or 'unknown'!r} is not in {prefs.quantizations}"
        )
    if prefs.require_parameters and ep.supported_parameters is not None:
        missing = sorted(ctx.used_params - ep.supported_parameters)
        if missing:
            return Exclusion(Why.PARAMETERS, f"does not support {', '.join(missing)} (require_parameters)")
    price_why = _price_exclusion(ep, ctx)
    if price_why is not None:
        return price_why
    if ctx.tokens_in + ctx.max_tokens > ep.context_length:
        return Exclusion(
            Why.CONTEXT, f"context window {ep.context_length} < {ctx.tokens_in} input + {ctx.max_tokens} output tokens"
        )
    if ep.max_output_tokens is not None and ctx.max_tokens > ep.max_output_tokens:
        return Exclusion(Why.CONTEXT, f"max_tokens {ctx.max_tokens} is above the endpoint's {ep.max_output_tokens}")
    if ep.provider in live.disabled_providers:
        return Exclusion(Why.HEALTH, f"no usable key for {ep.provider!r}")
    if ep.slug in live.unhealthy:
        return Exclusion(Why.HEALTH, "circuit open: recent calls failed")
    return None


def _price_exclusion(ep: Endpoint, ctx: _Ctx) -> Exclusion | None:
    mp = ctx.policy.prefs.max_price
    if ep.price is None:
        if not ctx.policy.allow_unpriced:
            return Exclusion(Why.PRICE, "price unknown (set policy.allow_unpriced to route here)")
        if mp is not None:
            return Exclusion(Why.PRICE, "price unknown and max_price is set")
        if ctx.max_cost is not None:
            return Exclusion(Why.PRICE, f"price unknown: its worst case cannot be held to max_cost ${ctx.max_cost}")
        if ctx.live.budget_remaining is not None:
            return Exclusion(Why.PRICE, "price unknown: it cannot be reserved against the remaining budget")
        return None
    if mp is None:
        return None
    if mp.prompt is not None and ep.price.input > mp.prompt:
        return Exclusion(Why.PRICE, f"prompt price ${ep.price.input}/M is above max_price ${mp.prompt}/M")
    if mp.completion is not None and ep.price.output > mp.completion:
        return Exclusion(Why.PRICE, f"completion price ${ep.price.output}/M is above max_price ${mp.completion}/M")
    # max_price.request / image / audio: the catalog charges by the token only, so no endpoint exceeds them
    return None


def _budget_exclusion(worst: Decimal | None, ctx: _Ctx) -> Exclusion | None:
    if worst is None:
        return None  # only reachable for unpriced endpoints with no max_cost and no budget (see above)
    if ctx.max_cost is not None and worst > ctx.max_cost:
        return Exclusion(Why.BUDGET, f"worst case ${worst:.6f} is above max_cost ${ctx.max_cost}")
    remaining = ctx.live.budget_remaining
    if remaining is not None and worst > remaining:
        return Exclusion(
            Why.BUDGET_REMAINING, f"worst case ${worst:.6f} is above the remaining budget ${remaining:.6f}"
        )
    return None


def _soft_parameters(eligible: list[_Eligible], ctx: _Ctx) -> list[_Eligible]:
    """`tools` and `response_format` go only to endpoints that support them when some endpoint of the model
    does; if none does, the model keeps all its endpoints (the parameter may be ignored there)."""
    for param in SOFT_PARAMETERS:
        if param not in ctx.used_params:
            continue
        keep = [e for e in eligible if e.ep.supported_parameters is None or param in e.ep.supported_parameters]
        if keep and len(keep) < len(eligible):
            for e in eligible:
                if e not in keep:
                    ctx.excluded[e.ep.slug] = Exclusion(
                        Why.PARAMETERS, f"does not support {param}, which other endpoints of this model do"
                    )
            eligible = keep
    return eligible


def _order(eligible: list[_Eligible], ctx: _Ctx) -> tuple[list[_Eligible], dict[str, float]]:
    """The order to try `eligible` in, and each endpoint's odds of going first."""
    prefs, excluded = ctx.policy.prefs, ctx.excluded
    if not eligible:
        return [], {}
    head: list[_Eligible] = []
    rest = eligible
    if prefs.order:
        rank = {name: i for i, name in enumerate(prefs.order)}

        def order_rank(e: _Eligible) -> tuple[int, int]:
            best = min(rank[name] for name in rank if matches(name, e.ep))
            return best, e.model_rank

        head = sorted((e for e in eligible if any(matches(n, e.ep) for n in rank)), key=order_rank)
        rest = [e for e in eligible if e not in head]
        if not prefs.allow_fallbacks:
            for e in rest:
                excluded[e.ep.slug] = Exclusion(Why.PREFERENCE, "not in provider.order and allow_fallbacks is false")
            return head, ({head[0].ep.slug: 1.0} if head else {})
    if not prefs.allow_fallbacks:
        # OpenRouter: without fallbacks only the top (lowest-cost, or best by `sort`) provider serves
        ordered = _sorted(rest, prefs.sort_by or "price", ctx.live)
        for e in ordered[1:]:
            excluded[e.ep.slug] = Exclusion(Why.PREFERENCE, "allow_fallbacks is false: only the first choice is used")
        return ordered[:1], {ordered[0].ep.slug: 1.0}
    tail, odds = _strategy(rest, prefs, ctx)
    if head:
        odds = {head[0].ep.slug: 1.0}
    return head + tail, odds


def _strategy(
    eligible: list[_Eligible], prefs: ProviderPreferences, ctx: _Ctx
) -> tuple[list[_Eligible], dict[str, float]]:
    """`sort`, else the weighted draw; endpoints measured outside `preferred_*` thresholds go last."""
    preferred, others = _by_thresholds(eligible, prefs, ctx.live)
    ordered: list[_Eligible] = []
    odds: dict[str, float] = {}
    for part in (preferred, others):
        if not part:
            continue
        if prefs.sort_by is not None:
            chunk = _sorted(part, prefs.sort_by, ctx.live)
            part_odds = {chunk[0].ep.slug: 1.0}
        else:
            chunk, part_odds = weighted_order(part, ctx.rng)
        if not ordered:
            odds = part_odds
        ordered += chunk
    return ordered, odds


def _price_key(e: _Eligible) -> tuple[int, Decimal, int, str]:
    if e.expected is None:
        return (1, Decimal(0), e.model_rank, e.ep.slug)
    return (0, e.expected, e.model_rank, e.ep.slug)


def _sorted(eligible: list[_Eligible], by: str, live: LiveState) -> list[_Eligible]:
    if by == "price":
        return sorted(eligible, key=_price_key)

    def live_key(e: _Eligible) -> tuple[int, float, tuple[int, Decimal, int, str]]:
        st = live.stats.get(e.ep.slug)
        value = None if st is None else (st.latency_ms if by == "latency" else st.throughput_tps)
        if value is None:
            return (1, 0.0, _price_key(e))  # no measurements yet: after the measured ones, cheapest first
        return (0, value if by == "latency" else -value, _price_key(e))

    return sorted(eligible, key=live_key)


def _cutoffs(value: float | PercentileCutoffs | None) -> list[float]:
    if value is None:
        return []
    return value.values() if isinstance(value, PercentileCutoffs) else [value]


def _by_thresholds(
    eligible: list[_Eligible], prefs: ProviderPreferences, live: LiveState
) -> tuple[list[_Eligible], list[_Eligible]]:
    """Split into endpoints that meet `preferred_min_throughput`/`preferred_max_latency` (or have no
    measurements) and those measured outside them. Live statistics are means, so every percentile cutoff is
    compared with the mean."""
    min_tps = _cutoffs(prefs.preferred_min_throughput)
    max_latency_s = _cutoffs(prefs.preferred_max_latency)
    if not min_tps and not max_latency_s:
        return eligible, []
    good: list[_Eligible] = []
    slow: list[_Eligible] = []
    for e in eligible:
        st = live.stats.get(e.ep.slug)
        too_slow = st is not None and (
            (st.throughput_tps is not None and any(st.throughput_tps < v for v in min_tps))
            or (st.latency_ms is not None and any(st.latency_ms / 1000 > v for v in max_latency_s))
        )
        (slow if too_slow else good).append(e)
    return good, slow


def inverse_square_weights(eligible: list[_Eligible]) -> list[float]:
    return [1.0 / float(max(e.expected or Decimal(0), PRICE_FLOOR)) ** 2 for e in eligible]


def weighted_order(eligible: list[_Eligible], rng: random.Random) -> tuple[list[_Eligible], dict[str, float]]:
    """Sample without replacement, each draw weighted by 1 / price²; unpriced endpoints go last. Returns the
    order and the odds of each endpoint being drawn first (its weight over the total)."""
    priced = sorted((e for e in eligible if e.expected is not None), key=lambda e: e.ep.slug)
    unpriced = sorted((e for e in eligible if e.expected is None), key=lambda e: e.ep.slug)
    weights = inverse_square_weights(priced)
    total = sum(weights)
    odds = {e.ep.slug: w / total for e, w in zip(priced, weights, strict=True)} if priced else {}
    if not priced and unpriced:
        odds = {unpriced[0].ep.slug: 1.0}
    out: list[_Eligible] = []
    while priced:
        pick = rng.random() * sum(weights)
        acc = 0.0
        idx = len(priced) - 1
        for i, w in enumerate(weights):
            acc += w
            if pick < acc:
                idx = i
                break
        out.append(priced.pop(idx))
        weights.pop(idx)
    return out + unpriced, odds
