"""`plan()`: a job, the catalog, the policy and the live state in; an ordered plan with every exclusion out."""

from __future__ import annotations

import random
from dataclasses import replace

from shared.catalog import Catalog
from shared.config import PolicyConfig
from shared.errors import RoutingError
from shared.models import JobSpec, estimate_input_tokens, expected_input_tokens
from worker.router.context import Ctx, Eligible
from worker.router.filters import budget_exclusion, exclusion, soft_parameters
from worker.router.ordering import order_candidates
from worker.router.policy import merge_policy
from worker.router.types import Candidate, Exclusion, LiveState, Plan, Why


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
    ctx = Ctx(
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
    candidates = candidates_for(model_ids, ctx)

    if not candidates and explicit is None and cls.over_budget == "downgrade":
        if any(e.why is Why.BUDGET for e in ctx.excluded.values()):
            tried = set(model_ids)
            for lower in lower_classes(catalog, class_name):
                more = [m for m in dict.fromkeys(catalog.classes[lower].models) if m not in tried]
                tried.update(more)
                found = candidates_for(more, ctx)
                if found:
                    notes.append(
                        f"downgraded to class {lower!r}: every {class_name!r} model's worst case is above max_cost"
                    )
                    candidates = [replace(c, note=f"downgrade ({lower}); {c.note}") for c in found]
                    break
    elif not candidates and cls.over_budget == "fail" and any(e.why is Why.BUDGET for e in ctx.excluded.values()):
        notes.append(f"class {class_name!r} fails rather than downgrade when over budget")

    return Plan(class_name, max_tokens, ctx.max_cost, tokens_in, tuple(candidates), ctx.excluded, tuple(notes))


def lower_classes(catalog: Catalog, class_name: str) -> list[str]:
    """Classes configured before this one, nearest first: the config's order is its ladder."""
    names = list(catalog.classes)
    return list(reversed(names[: names.index(class_name)]))


def candidates_for(model_ids: list[str], ctx: Ctx) -> list[Candidate]:
    groups: list[list[Eligible]] = []
    for rank, model_id in enumerate(model_ids):
        endpoints = ctx.catalog.by_model.get(model_id)
        if endpoints is None:
            ctx.excluded[model_id] = Exclusion(Why.UNKNOWN_MODEL, f"model {model_id!r} is not in the catalog")
            continue
        eligible: list[Eligible] = []
        for ep in endpoints:
            worst = ep.worst_case_cost(ctx.tokens_in, ctx.max_tokens)
            why = exclusion(ep, ctx) or budget_exclusion(worst, ctx)
            if why is not None:
                ctx.excluded[ep.slug] = why
                continue
            eligible.append(Eligible(ep, worst, ep.cost(ctx.expected_in, ctx.expected_out), rank))
        groups.append(soft_parameters(eligible, ctx))

    prefs = ctx.policy.prefs
    label = {rank: "primary model" if rank == 0 else f"fallback model {rank + 1}" for rank in range(len(model_ids))}
    out: list[Candidate] = []
    if prefs.sort_partition == "none" and prefs.sort_by is not None:
        pooled = [e for g in groups for e in g]
        ordered, odds = order_candidates(pooled, ctx)
        for i, e in enumerate(ordered):
            note = f"{label[e.model_rank]}, choice {i + 1} of {len(ordered)} (sorted across models)"
            out.append(Candidate(e.ep, e.worst, e.expected, note, odds.get(e.ep.slug, 0.0)))
        return out
    for group in groups:
        ordered, odds = order_candidates(group, ctx)
        if out:
            odds = {}  # only the first non-empty model can be tried first
        for i, e in enumerate(ordered):
            note = f"{label[e.model_rank]}, choice {i + 1} of {len(ordered)}"
            out.append(Candidate(e.ep, e.worst, e.expected, note, odds.get(e.ep.slug, 0.0)))
    return out
