"""Admission of a submission made with a router key: is the key usable, is it under its limit, and may each
line have what it asks for.

    gate = await admit(store, catalog, key_id, default_class=...)    # raises KeyRefused for the whole file
    spec = gate.check(spec)                                          # raises InputError for one line

Whole-submission refusals (`KeyRefused`): unknown key (`invalid_api_key`, 401), disabled (`key_disabled`,
403), expired (`key_expired`, 401), at or over its spending limit (`key_limit_exceeded`, 402, naming the
limit, the spend and when it resets). Line refusals (line errors, the other lines proceed): a class, model
or provider the key does not allow (`class_not_allowed`, `model_not_allowed`, `provider_not_allowed`).

A line accepted under a key that restricts models and names none gets the class's allowed models written
into it, so the worker routes it within the key's allowance without looking the key up. Feasibility is
checked against the organisation's policy narrowed by the key (`policy_for_key`). Every refusal is
recorded in the audit (`policy_denials`, source `submission`), one counter per code per day.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from producer.validate import SpecChecker, resolve_model
from shared.audit import record_refusal
from shared.catalog import Catalog
from shared.errors import InputError
from shared.governance import policy_for_key
from shared.keys import ApiKey, KeyRefused, limit_refusal
from shared.models import JobSpec
from shared.spend import KeyBudget, key_budget
from shared.store import Store
from shared.timeutil import utcnow


class KeyGate:
    """Checks one submission's lines against its key. Same `check(spec) -> spec` face as SpecChecker."""

    def __init__(self, key: ApiKey, catalog: Catalog, budget: KeyBudget, default_class: str | None = None) -> None:
        self.key = key
        self.budget = budget
        self.catalog = catalog
        self.default_class = default_class or catalog.config.routing.default_class
        self.checker = SpecChecker(catalog)
        self.checker.policy = policy_for_key(catalog.config.policy, key)
        self.allowed_models = (
            None
            if key.allowed_models is None
            else frozenset(resolve_model(catalog, m) or m for m in key.allowed_models)
        )
        self.refused: Counter[str] = Counter()
        self._last_reason: dict[str, str] = {}

    def check(self, spec: JobSpec) -> JobSpec:
        try:
            return self.checker.check(self._narrow(spec))
        except InputError as e:
            if e.code.endswith("_not_allowed"):
                self.refused[e.code] += 1
                self._last_reason[e.code] = e.message
            raise

    def _refuse(self, code: str, message: str) -> InputError:
        return InputError(f"{message} (key {self.key.id})", code=code)

    def _narrow(self, spec: JobSpec) -> JobSpec:
        key = self.key
        class_name = spec.class_ or self.default_class
        if key.allowed_classes is not None and class_name not in key.allowed_classes:
            raise self._refuse(
                "class_not_allowed",
                f"class {class_name!r} is not allowed for this key; allowed: {', '.join(sorted(key.allowed_classes))}",
            )
        if key.allowed_providers is not None and spec.provider is not None:
            asked = [*(spec.provider.only or []), *(spec.provider.order or [])]
            denied = sorted({p for p in asked if p not in key.allowed_providers})
            if denied:
                raise self._refuse(
                    "provider_not_allowed",
                    f"provider(s) {', '.join(map(repr, denied))} not allowed for this key; "
                    f"allowed: {', '.join(sorted(key.allowed_providers)) or 'none'}",
                )
        allowed = self.allowed_models
        if allowed is None:
            return spec
        requested = spec.requested_models()
        if requested is not None:
            denied = sorted({m for m in requested if (resolve_model(self.catalog, m) or m) not in allowed})
            if denied:
                raise self._refuse(
                    "model_not_allowed",
                    f"model(s) {', '.join(map(repr, denied))} not allowed for this key; "
                    f"allowed: {', '.join(sorted(allowed))}",
                )
            return spec
        cls = self.catalog.classes.get(class_name)
        if cls is None:
            return spec  # the checker reports the unknown class
        models = [m for m in cls.models if m in allowed]
        if not models:
            raise self._refuse(
                "model_not_allowed",
                f"none of class {class_name!r}'s models ({', '.join(cls.models)}) is allowed for this key; "
                f"allowed: {', '.join(sorted(allowed))}",
            )
        return spec.model_copy(update={"models": models, "model": None})

    async def flush_refusals(self, store: Store, batch_id: str | None = None) -> None:
        """Record the lines refused so far in the audit (one counter per code)."""
        for code, n in sorted(self.refused.items()):
            await record_refusal(store, self.key.id, code, self._last_reason[code], n=n, batch_id=batch_id)
        self.refused.clear()


async def admit(
    store: Store, catalog: Catalog, key_id: str, *, default_class: str | None = None, now: datetime | None = None
) -> KeyGate:
    """The gate for a submission with router key `key_id`, or KeyRefused (recorded in the audit)."""
    now = now or utcnow()
    budget: KeyBudget | None = await store.read(key_budget(key_id, now))
    refusal: KeyRefused | None
    if budget is None:
        refusal = KeyRefused("invalid_api_key", f"no router key {key_id}", key_id=key_id)
    else:
        refusal = budget.key.refusal(now) or limit_refusal(
            budget.key, budget.committed, budget.period_end, unpriced_calls=budget.spend.unpriced_calls
        )
    if refusal is not None:
        await record_refusal(store, key_id, refusal.code, refusal.message, now=now)
        raise refusal
    assert budget is not None
    return KeyGate(budget.key, catalog, budget, default_class)
