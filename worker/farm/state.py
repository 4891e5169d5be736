"""Per-provider runtime state, precomputed from a `ProviderBehaviour` so requests do no setup work."""

from __future__ import annotations

from worker.farm.behaviour import ANY_MODEL, ProviderBehaviour
from worker.farm.faults import FaultPlan
from worker.farm.limits import RateLimiter
from worker.farm.wires import WIRES, Wire


class ProviderState:
    """One provider's current behaviour, its derived lookups, its counter and its rate-limit windows.

    `apply` swaps the behaviour and its lookups but keeps the counter and windows: changing a provider
    at runtime (say, lowering `rpm`) acts on the traffic it has already seen.
    """

    __slots__ = (
        "behaviour",
        "counter",
        "faults",
        "keys",
        "limited",
        "limiter",
        "models",
        "name",
        "sleeps",
        "wire",
    )

    def __init__(self, name: str, behaviour: ProviderBehaviour) -> None:
        self.name = name
        self.counter = 0
        self.limiter = RateLimiter()
        self.apply(behaviour)

    def apply(self, behaviour: ProviderBehaviour) -> None:
        self.behaviour = behaviour
        self.wire: Wire = WIRES[behaviour.wire]
        self.models = None if ANY_MODEL in behaviour.models else frozenset(behaviour.models)
        self.keys = None if behaviour.api_keys is None else frozenset(behaviour.api_keys)
        self.faults = FaultPlan.of(behaviour)
        self.limited = behaviour.rpm is not None or behaviour.tpm is not None
        self.sleeps = bool(behaviour.latency_ms or behaviour.jitter_ms or behaviour.ms_per_output_token)

    def listed_models(self) -> list[str]:
        """The models to list on `/v1/models`: the explicit ones (a wildcard provider lists none)."""
        return [m for m in self.behaviour.models if m != ANY_MODEL]

    def reset(self) -> None:
        self.counter = 0
        self.limiter.reset()
