"""What a plan is made of: candidates, exclusions and why, and the live state the planner may know."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from shared.catalog import Endpoint
from shared.errors import RoutingError


class Why(StrEnum):
    """Kinds of exclusion. Some are permanent for the job (policy), some pass (health, remaining budget)."""

    POLICY = "policy"
    PREFERENCE = "preference"
    DATA_POLICY = "data_policy"
    PRICE = "price"
    CONTEXT = "context"
    PARAMETERS = "parameters"
    BUDGET = "budget"
    BUDGET_REMAINING = "budget_remaining"
    HEALTH = "health"
    UNKNOWN_MODEL = "unknown_model"

    @property
    def transient(self) -> bool:
        return self in (Why.HEALTH, Why.BUDGET_REMAINING)

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Why.POLICY: "blocked by the organisation's policy",
    Why.PREFERENCE: "left out by the job's provider preferences",
    Why.DATA_POLICY: "outside the data policy (training or retention)",
    Why.PRICE: "over max_price or unpriced",
    Why.CONTEXT: "too small a context window or output limit",
    Why.PARAMETERS: "missing a required parameter",
    Why.BUDGET: "worst case above max_cost",
    Why.BUDGET_REMAINING: "worst case above the remaining budget",
    Why.HEALTH: "unhealthy or without a usable key",
    Why.UNKNOWN_MODEL: "unknown model",
}


@dataclass(frozen=True, slots=True)
class Exclusion:
    why: Why
    reason: str


@dataclass(frozen=True, slots=True)
class EndpointStats:
    latency_ms: float | None = None
    """Mean (EWMA) latency of recorded calls."""
    throughput_tps: float | None = None
    """Mean (EWMA) output tokens per second."""


@dataclass(frozen=True)
class LiveState:
    """What the router may know of the world right now; assembled by the worker, empty for a dry run."""

    unhealthy: frozenset[str] = frozenset()
    """Endpoints whose circuit breaker is open."""
    stats: Mapping[str, EndpointStats] = field(default_factory=dict)
    budget_remaining: Decimal | None = None
    """The tightest remaining spend (key limit, batch budget) this job may use; None = unlimited."""
    disabled_providers: frozenset[str] = frozenset()
    """Providers with no usable key (e.g. the key answered 401)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    endpoint: Endpoint
    worst_case_cost: Decimal | None
    expected_cost: Decimal | None
    note: str
    first_odds: float = 0.0
    """The chance that this endpoint is the one tried first, over the load-balancing draw (1.0 when the
    order is fixed by `order` or `sort`). Odds are the same for every seed; the seed picks the outcome."""


@dataclass(frozen=True)
class Plan:
    class_name: str
    max_tokens: int
    max_cost: Decimal | None
    input_tokens: int
    candidates: tuple[Candidate, ...]
    excluded: dict[str, Exclusion]
    notes: tuple[str, ...] = ()

    @property
    def only_transient_exclusions(self) -> bool:
        """Nothing to call now, but only for reasons that pass (open circuits, budget period)."""
        return (
            not self.candidates
            and bool(self.excluded)
            and any(e.why.transient for e in self.excluded.values())
            and all(e.why.transient or e.why in (Why.POLICY, Why.PREFERENCE) for e in self.excluded.values())
        )

    def first_choice(self) -> list[tuple[Candidate, float]]:
        """Where the first call goes, with its odds (they sum to 1 when there is a candidate)."""
        return [(c, c.first_odds) for c in self.candidates if c.first_odds > 0]

    def summary(self) -> str:
        """One line on why nothing is left: how many endpoints fell to each kind of reason."""
        counts = Counter(e.why for e in self.excluded.values())
        if not counts:
            return "no endpoint is configured for it"
        parts = [f"{why.label} ({n})" for why, n in counts.most_common()]
        return f"{sum(counts.values())} endpoint(s) considered, excluded as " + "; ".join(parts)

    def error(self) -> RoutingError:
        reasons = {slug: e.reason for slug, e in self.excluded.items()}
        return RoutingError(f"no endpoint can serve this job (class {self.class_name!r}): {self.summary()}", reasons)

    def explain(self) -> str:
        lines = [
            f"class {self.class_name}: max_tokens={self.max_tokens}, "
            f"max_cost={'none' if self.max_cost is None else f'${self.max_cost}'}, "
            f"~{self.input_tokens} input tokens (upper estimate)"
        ]
        lines += [f"note: {n}" for n in self.notes]
        if self.candidates:
            lines.append("plan (tried in this order; odds = chance of being tried first):")
            for i, c in enumerate(self.candidates, 1):
                worst = "unknown" if c.worst_case_cost is None else f"${c.worst_case_cost:.6f}"
                expected = "unknown" if c.expected_cost is None else f"${c.expected_cost:.6f}"
                odds = f"{c.first_odds:6.1%}" if c.first_odds > 0 else "     -"
                lines.append(
                    f"  {i}. {c.endpoint.slug:<34} worst {worst:>10}  expected {expected:>10}  odds {odds}  {c.note}"
                )
        else:
            lines.append(f"plan: nothing can serve this job — {self.summary()}")
        if self.excluded:
            lines.append("excluded:")
            for slug, e in sorted(self.excluded.items()):
                lines.append(f"  - {slug:<34} [{e.why.value}] {e.reason}")
        return "\n".join(lines)
