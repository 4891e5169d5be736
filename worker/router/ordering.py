"""In what order a model's eligible endpoints are tried: `provider.order`, `sort` (price, latency,
throughput), preferred thresholds, or the default random draw weighted by the inverse square of price."""

from __future__ import annotations

import random
from decimal import Decimal

from shared.models import PercentileCutoffs, ProviderPreferences
from worker.router.context import Ctx, Eligible
from worker.router.policy import matches
from worker.router.types import Exclusion, LiveState, Why

PRICE_FLOOR = Decimal("1e-12")
"""A free endpoint still gets a finite weight."""


def order_candidates(eligible: list[Eligible], ctx: Ctx) -> tuple[list[Eligible], dict[str, float]]:
    """The order to try `eligible` in, and each endpoint's odds of going first."""
    prefs, excluded = ctx.policy.prefs, ctx.excluded
    if not eligible:
        return [], {}
    head: list[Eligible] = []
    rest = eligible
    if prefs.order:
        rank = {name: i for i, name in enumerate(prefs.order)}

        def order_rank(e: Eligible) -> tuple[int, int]:
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
    eligible: list[Eligible], prefs: ProviderPreferences, ctx: Ctx
) -> tuple[list[Eligible], dict[str, float]]:
    """`sort`, else the weighted draw; endpoints measured outside `preferred_*` thresholds go last."""
    preferred, others = _by_thresholds(eligible, prefs, ctx.live)
    ordered: list[Eligible] = []
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


def _price_key(e: Eligible) -> tuple[int, Decimal, int, str]:
    if e.expected is None:
        return (1, Decimal(0), e.model_rank, e.ep.slug)
    return (0, e.expected, e.model_rank, e.ep.slug)


def _sorted(eligible: list[Eligible], by: str, live: LiveState) -> list[Eligible]:
    if by == "price":
        return sorted(eligible, key=_price_key)

    def live_key(e: Eligible) -> tuple[int, float, tuple[int, Decimal, int, str]]:
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
    eligible: list[Eligible], prefs: ProviderPreferences, live: LiveState
) -> tuple[list[Eligible], list[Eligible]]:
    """Split into endpoints that meet `preferred_min_throughput`/`preferred_max_latency` (or have no
    measurements) and those measured outside them. Live statistics are means, so every percentile cutoff is
    compared with the mean."""
    min_tps = _cutoffs(prefs.preferred_min_throughput)
    max_latency_s = _cutoffs(prefs.preferred_max_latency)
    if not min_tps and not max_latency_s:
        return eligible, []
    good: list[Eligible] = []
    slow: list[Eligible] = []
    for e in eligible:
        st = live.stats.get(e.ep.slug)
        too_slow = st is not None and (
            (st.throughput_tps is not None and any(st.throughput_tps < v for v in min_tps))
            or (st.latency_ms is not None and any(st.latency_ms / 1000 > v for v in max_latency_s))
        )
        (slow if too_slow else good).append(e)
    return good, slow


def inverse_square_weights(eligible: list[Eligible]) -> list[float]:
    return [1.0 / float(max(e.expected or Decimal(0), PRICE_FLOOR)) ** 2 for e in eligible]


def weighted_order(eligible: list[Eligible], rng: random.Random) -> tuple[list[Eligible], dict[str, float]]:
    """Sample without replacement, each draw weighted by 1 / price²; unpriced endpoints go last. Returns the
    order and the odds of each endpoint being drawn first (its weight over the total)."""
    priced = sorted((e for e in eligible if e.expected is not None), key=lambda e: e.ep.slug)
    unpriced = sorted((e for e in eligible if e.expected is None), key=lambda e: e.ep.slug)
    weights = inverse_square_weights(priced)
    total = sum(weights)
    odds = {e.ep.slug: w / total for e, w in zip(priced, weights, strict=True)} if priced else {}
    if not priced and unpriced:
        odds = {unpriced[0].ep.slug: 1.0}
    out: list[Eligible] = []
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
