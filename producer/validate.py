"""Validation against the catalog at submission, so a job that can never run is refused with a reason now,
not failed later: unknown class or model, unknown provider names in `order`/`only`/`ignore`, options the
catalog cannot honour, or routing constraints (max_price, data policy, context window, budget, the
organisation's policy) that exclude every endpoint — the error then says why, endpoint by endpoint.

Model names are resolved here too: a catalog id, a provider's own name for it (`claude-3-5-haiku-latest`)
or an OpenRouter-style `vendor/model` all name the same catalog model, and OpenRouter's `:floor` and
`:nitro` suffixes become `provider.sort` `price` and `throughput`.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.catalog import Catalog
from shared.errors import InputError, RoutingError
from shared.models import JobSpec, ProviderPreferences, estimate_input_tokens
from worker.router import LiveState, plan

VARIANT_SORT = {"floor": "price", "nitro": "throughput"}
"""OpenRouter's model suffixes that are routing shortcuts."""


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


def provider_slugs(catalog: Catalog) -> set[str]:
    """Every name `order`/`only`/`ignore` may use: providers and `provider/model` endpoint slugs."""
    return {p.lower() for p in catalog.providers} | {slug.lower() for slug in catalog.endpoints}


class SpecChecker:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.policy = catalog.config.policy
        self._slugs = provider_slugs(catalog)
        self._feasible: set[tuple[str, int]] = set()

    def check(self, spec: JobSpec) -> JobSpec:
        """The spec with model names resolved, or InputError(code-prefixed message)."""
        spec = self.resolve(spec)
        reason = self._infeasible(spec)
        if reason is not None:
            raise InputError(reason, code="no_route")
        return spec

    def resolve(self, spec: JobSpec) -> JobSpec:
        """Names checked and resolved (class, models, providers, options), without asking the planner."""
        catalog = self.catalog
        if spec.class_ is not None and spec.class_ not in catalog.classes:
            raise InputError(
                f"unknown class {spec.class_!r}; configured: {', '.join(catalog.classes)}", code="unknown_class"
            )
        requested = spec.requested_models()
        if requested is not None:
            spec = self._resolve_models(spec, requested)
        if spec.provider is not None:
            self._check_preferences(spec.provider)
        return spec

    def _resolve_models(self, spec: JobSpec, requested: list[str]) -> JobSpec:
        resolved: list[str] = []
        sorts: set[str] = set()
        for name in requested:
            model_id = resolve_model(self.catalog, name)
            if model_id is None and ":" in name:  # upstream names may hold a colon (Bedrock's `…-v1:0`)
                base, variant = name.rsplit(":", 1)
                model_id = resolve_model(self.catalog, base)
                if model_id is not None and variant not in VARIANT_SORT:
                    raise InputError(
                        f"model variant ':{variant}' of {name!r} is not supported (only :floor and :nitro)",
                        code="unknown_model",
                    )
                if model_id is not None:
                    sorts.add(VARIANT_SORT[variant])
            if model_id is None:
                raise InputError(f"unknown model {name!r}; see `routeyard models`", code="unknown_model")
            resolved.append(model_id)
        update: dict[str, object] = {"models": list(dict.fromkeys(resolved)), "model": None}
        if sorts:
            prefs = spec.provider or ProviderPreferences()
            wanted = sorts | ({prefs.sort_by} if prefs.sort_by else set())
            if len(wanted) > 1:
                raise InputError(
                    f"the model suffixes and provider.sort ask for different orders ({', '.join(sorted(wanted))})",
                    code="invalid_request",
                )
            if prefs.sort is None:
                update["provider"] = prefs.model_copy(update={"sort": sorts.pop()})
        return spec.model_copy(update=update)

    def _check_preferences(self, prefs: ProviderPreferences) -> None:
        named = [*(prefs.order or []), *(prefs.only or []), *(prefs.ignore or [])]
        unknown = sorted({p for p in named if p not in self._slugs})
        if unknown:
            raise InputError(
                f"unknown provider(s) {', '.join(map(repr, unknown))}; configured: "
                f"{', '.join(self.catalog.providers)} (or a provider/model endpoint slug; see `routeyard models`)",
                code="unknown_provider",
            )
        if prefs.enforce_distillable_text:
            raise InputError(
                "provider.enforce_distillable_text is not supported: the catalog has no distillation terms",
                code="invalid_request",
            )

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
