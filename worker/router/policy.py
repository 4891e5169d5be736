"""The organisation's policy narrowed by a job's provider preferences: a job can narrow it, never widen it."""

from __future__ import annotations

from dataclasses import dataclass

from shared.catalog import Endpoint
from shared.config import PolicyConfig
from shared.models import ProviderPreferences


@dataclass(frozen=True, slots=True)
class MergedPolicy:
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


def merge_policy(org: PolicyConfig, prefs: ProviderPreferences | None) -> MergedPolicy:
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
    return MergedPolicy(
        allowed=tuple(allowed),
        allowed_by=tuple(allowed_by),
        ignored=ignored,
        deny_data_collection=org.data_collection == "deny" or prefs.data_collection == "deny",
        zdr=org.zdr or bool(prefs.zdr),
        regions=None if org.regions is None else frozenset(org.regions),
        allow_unpriced=org.allow_unpriced,
        prefs=prefs,
    )
