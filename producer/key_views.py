"""How a router key looks to the outside (CLI `--json`, the admin API): its settings and its current period,
never its token or hash; and the check of a key's allowances against the catalog."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from producer.validate import resolve_model
from shared.catalog import Catalog
from shared.errors import InputError
from shared.keys import ApiKey
from shared.spend import KeyBudget


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def key_state(key: ApiKey, now: datetime) -> str:
    if key.disabled:
        return "disabled"
    if key.expired(now):
        return "expired"
    return "active"


def key_json(key: ApiKey, now: datetime) -> dict[str, Any]:
    def opt(v: frozenset[str] | None) -> list[str] | None:
        return None if v is None else sorted(v)

    return {
        "id": key.id,
        "name": key.name,
        "state": key_state(key, now),
        "environment": key.environment,
        "team": key.team,
        "project": key.project,
        "labels": sorted(key.labels),
        "admin": key.admin,
        "expires_at": iso(key.expires_at),
        "allowed_classes": opt(key.allowed_classes),
        "allowed_models": opt(key.allowed_models),
        "allowed_providers": opt(key.allowed_providers),
        "limit": None if key.limit is None else str(key.limit),
        "limit_reset": key.limit_reset,
        "include_byok_in_limit": key.include_byok_in_limit,
        "created_at": iso(key.created_at),
        "rotated_at": iso(key.rotated_at),
        "disabled_at": iso(key.disabled_at),
    }


def budget_json(b: KeyBudget) -> dict[str, Any]:
    s = b.spend
    return {
        "period_start": iso(b.period_start),
        "resets_at": iso(b.period_end),
        "spent": str(b.spent),
        "spent_complete": s.complete,
        "unpriced_calls": s.unpriced_calls,
        "in_flight": str(s.in_flight),
        "credits_cost": str(s.credits_cost),
        "byok_fees": str(s.fees),
        "byok_cost": str(s.byok_cost),
        "limit": None if b.limit is None else str(b.limit),
        "remaining": None if b.remaining is None else str(b.remaining),
        "calls": s.calls,
        "input_tokens": s.input_tokens,
        "output_tokens": s.output_tokens,
        "jobs": s.jobs,
    }


def resolve_allowances(
    catalog: Catalog, classes: list[str], models: list[str], providers: list[str]
) -> tuple[list[str] | None, list[str] | None, list[str] | None]:
    """Allowed classes, models (resolved to catalog ids) and providers; unknown names are refused now (as
    InputError, naming each), not discovered when a job is refused later. Empty lists mean "all"."""
    problems = [f"unknown class {c!r}" for c in classes if c not in catalog.classes]
    problems += [f"unknown provider {p!r}" for p in providers if p not in catalog.providers]
    resolved = []
    for m in models:
        model_id = resolve_model(catalog, m)
        if model_id is None:
            problems.append(f"unknown model {m!r}")
        else:
            resolved.append(model_id)
    if problems:
        raise InputError("; ".join(problems), code="invalid_key")
    return classes or None, resolved or None, providers or None
