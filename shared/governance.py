"""Governance: the organisation's routing policy narrowed by the router key a job was submitted with.

    policy_for_key(org_policy, key) -> PolicyConfig          pure; the worker passes the result to plan()

A key can only narrow the organisation's policy, never widen it:
- `allowed_providers` intersects the organisation's allowlist (an empty intersection leaves nothing);
- a key carrying any of `policy.zdr_labels` (default `sensitive`) requires zero-data-retention endpoints,
  and endpoints that may train on prompts are excluded too (data that must not be retained must not be
  trained on).

Key-level allowed classes and models are checked at submission (`producer.admission`), where a refusal can
name the line; what the key allows is also written into each accepted job, so the worker needs no lookup.
"""

from __future__ import annotations

from typing import Any, Protocol

from shared.config import PolicyConfig


class KeyPolicy(Protocol):
    @property
    def allowed_providers(self) -> frozenset[str] | None: ...

    @property
    def labels(self) -> frozenset[str]: ...


def zdr_required(org: PolicyConfig, key: KeyPolicy) -> bool:
    return bool(key.labels & set(org.zdr_labels))


def policy_for_key(org: PolicyConfig, key: KeyPolicy | None) -> PolicyConfig:
    """`org` narrowed by `key` (None: no key, the organisation's policy as it is)."""
    if key is None:
        return org
    updates: dict[str, Any] = {}
    if key.allowed_providers is not None:
        allowed = set(key.allowed_providers)
        if org.allow_providers is not None:
            allowed &= set(org.allow_providers)
        updates["allow_providers"] = sorted(allowed)
    if zdr_required(org, key):
        updates["zdr"] = True
        updates["data_collection"] = "deny"
    return org.model_copy(update=updates) if updates else org
