"""Why an endpoint is left out of a plan: policy, preferences, data policy, price, context, parameters,
budget, health — each exclusion with its reason."""

from __future__ import annotations

from decimal import Decimal

from shared.catalog import Endpoint
from worker.router.context import Ctx, Eligible
from worker.router.policy import matches
from worker.router.types import Exclusion, Why

SOFT_PARAMETERS = ("tools", "response_format")
"""Parameters an endpoint of the same model must support when another one does, even without
`require_parameters` (OpenRouter's "default parameter preferences")."""


def exclusion(ep: Endpoint, ctx: Ctx) -> Exclusion | None:
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
    price_why = price_exclusion(ep, ctx)
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


def price_exclusion(ep: Endpoint, ctx: Ctx) -> Exclusion | None:
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


def budget_exclusion(worst: Decimal | None, ctx: Ctx) -> Exclusion | None:
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


def soft_parameters(eligible: list[Eligible], ctx: Ctx) -> list[Eligible]:
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
