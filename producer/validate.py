"""Validation against the catalog at submission, so a job that can never run is refused with a reason now,
not failed later: unknown class or model, unknown provider names in `order`/`only`/`ignore`, or routing
constraints (max_price, data policy, context window, budget) that exclude every endpoint.

Model names are resolved here too: a catalog id, a provider's own name for it (`claude-3-5-haiku-latest`)
or an OpenRouter-style `vendor/model` all name the same catalog model.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.catalog import Catalog
from shared.errors import InputError, RoutingError
from shared.models import JobSpec, estimate_input_tokens
from worker.router import LiveState, plan


def resolve_model(catalog: Catalog, name: str) -> str | None:
    if name in catalog.by_model:
        return name
    for (_, upstream), model_id in catalog.model_by_upstream.items():
        if upstream == name:
            return model_id
    if "/" in name:
        tail = name.split("/", 1)[1]
        return resolve_model(catalog, tail) if tail != name else None
    return None


class SpecChecker:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.policy = catalog.config.policy
        self._feasible: set[tuple[str, int]] = set()

    def check(self, spec: JobSpec) -> JobSpec:
        """The spec with model names resolved, or InputError(code-prefixed message)."""
        catalog = self.catalog
        if spec.class_ is not None and spec.class_ not in catalog.classes:
            raise InputError(
                f"unknown class {spec.class_!r}; configured: {', '.join(catalog.classes)}", code="unknown_class"
            )
        requested = spec.requested_models()
        if requested is not None:
            resolved = []
            for name in requested:
                model_id = resolve_model(catalog, name)
                if model_id is None:
                    raise InputError(f"unknown model {name!r}; see `routeyard models`", code="unknown_model")
                resolved.append(model_id)
            spec = spec.model_copy(update={"models": resolved, "model": None})
        if spec.provider is not None:
            named = [*(spec.provider.order or []), *(spec.provider.only or []), *(spec.provider.ignore or [])]
            unknown = sorted({p for p in named if p not in catalog.providers})
            if unknown:
                raise InputError(
                    f"unknown provider(s) {', '.join(map(repr, unknown))}; configured: {', '.join(catalog.providers)}",
                    code="unknown_provider",
                )
        reason = self._infeasible(spec)
        if reason is not None:
            raise InputError(reason, code="no_route")
        return spec

    def _infeasible(self, spec: JobSpec) -> str | None:
        """Why no endpoint could ever serve this spec (ignoring health and remaining budget), or None.

        Jobs that differ only in their text share one answer per size bucket; buckets round the token count
        up, so a cached "feasible" is never wrong for a smaller prompt of the same shape."""
        tokens = estimate_input_tokens(spec)
        bucket = 1 << max(6, (tokens - 1).bit_length())
        shape = spec.model_dump(exclude={"prompt", "messages", "custom_id", "metadata", "webhook_url", "priority"})
        key = (repr(sorted(shape.items())), bucket)
        if key in self._feasible:
            return None
        # Exclusions only grow with the prompt (context window, worst-case cost): feasible at the bucket's
        # upper bound means feasible for every prompt in the bucket.
        if self._plan_fails(spec, bucket) is None:
            self._feasible.add(key)
            return None
        return self._plan_fails(spec, tokens)

    def _plan_fails(self, spec: JobSpec, tokens: int) -> str | None:
        try:
            p = plan(spec, self.catalog, self.policy, LiveState(), seed=0, input_tokens=tokens)
        except RoutingError as e:
            return str(e)
        if p.candidates or all(e.why.transient for e in p.excluded.values()):
            return None
        return str(p.error())


def check_all(specs: Iterable[JobSpec], catalog: Catalog) -> list[JobSpec | InputError]:
    checker = SpecChecker(catalog)
    out: list[JobSpec | InputError] = []
    for s in specs:
        try:
            out.append(checker.check(s))
        except InputError as e:
            out.append(e)
    return out
