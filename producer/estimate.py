"""Before spending anything: what a batch will cost and how long it will take (`routeyard estimate`).

The model follows what the worker will do with each job:

- **where it goes**: the planner runs exactly as at submission; the first call goes to the plan's first
  candidate — under the default load balancing a random draw, so the estimate takes the draw's
  expectation (`Candidate.first_odds`: each endpoint's weight over the total) rather than one seeded draw.
  The worker seeds each job's draw with its id, which is random, so the expectation is what a batch
  converges to. Fallbacks are assumed not to fire (failed calls are not billed; a fallback costs only the
  price difference).
- **output tokens**: `ratio * max_tokens`. The ratio comes from the ledger when it has history — output
  tokens over `max_tokens` of recent successful calls, per (class, model), shrunk toward the ratio of the
  class's other models and that toward the config's `expected_output_ratio` prior, each with `PRIOR_WEIGHT`
  pseudo-calls, so a handful of calls cannot swing it. Without history, the prior.
- **input tokens**: `shared.models.expected_input_tokens` (a tokenizer-shaped count, unbiased for modern
  BPE tokenizers on English) times a per-model scale learned the same way from the ledger (recorded input
  tokens over that count), which absorbs each provider's own tokenizer. The planner keeps the upper
  estimate (`estimate_input_tokens`) for worst cases and context checks.
- **worst case**: per job, the most expensive candidate in its plan with every requested token produced.
- **wall time**: the slowest of (a) each rate-limit group (an endpoint with its own `rpm`/`tpm`, else its
  provider): a full minute's burst, then requests at `rpm/60` and tokens (prompt + `max_tokens`, as
  providers count them) at `tpm/60` per second; (b) the worker's concurrency, by Little's law:
  Σ jobs * latency / concurrency; (c) the slowest single call. Latency per endpoint is the ledger's mean
  when known, else `DEFAULT_FIRST_TOKEN_S + output / DEFAULT_OUTPUT_TPS`. It is a lower bound: retries,
  deferrals and uneven dispatch only add to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from producer.ingest import Line, LineError
from producer.validate import SpecChecker
from shared.catalog import Catalog, Endpoint
from shared.errors import InputError
from shared.models import JobSpec, expected_input_tokens
from shared.tables import Attempt, AttemptStatus, Job
from worker.router import EndpointStats, LiveState, Plan, plan

PRIOR_WEIGHT = 20
"""Pseudo-calls behind each prior: with n calls of history, history weighs n / (n + PRIOR_WEIGHT)."""
HISTORY_CALLS = 5000
"""The most recent successful calls the estimate learns from."""
DEFAULT_FIRST_TOKEN_S = 0.5
DEFAULT_OUTPUT_TPS = 60.0
"""Latency of an endpoint the ledger has not measured: typical hosted-LLM figures."""
MIN_LATENCY_CALLS = 5

attempts = Attempt.__table__  # type: ignore[attr-defined]
jobs = Job.__table__  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- history
@dataclass(slots=True)
class _Sums:
    calls: int = 0
    actual: float = 0.0
    predicted: float = 0.0

    def add(self, actual: float, predicted: float) -> None:
        self.calls += 1
        self.actual += actual
        self.predicted += predicted

    @property
    def ratio(self) -> float | None:
        return self.actual / self.predicted if self.predicted > 0 else None


@dataclass
class History:
    """What the ledger's recent successful calls say, in sums the estimate shrinks toward its priors."""

    output: dict[tuple[str, str], _Sums] = field(default_factory=dict)
    """(class, model) → output tokens vs max_tokens."""
    input: dict[str, _Sums] = field(default_factory=dict)
    """model → recorded input tokens vs `expected_input_tokens`."""
    latency: dict[str, _Sums] = field(default_factory=dict)
    """endpoint → latency ms (actual) and output tokens (predicted slot)."""
    calls: int = 0

    def add_call(
        self, *, class_name: str, model: str, endpoint: str, spec: JobSpec, max_tokens: int, row: dict[str, Any]
    ) -> None:
        self.calls += 1
        self.output.setdefault((class_name, model), _Sums()).add(row["output_tokens"] or 0, max_tokens)
        self.input.setdefault(model, _Sums()).add(row["input_tokens"] or 0, expected_input_tokens(spec))
        if row["latency_ms"] is not None:
            self.latency.setdefault(endpoint, _Sums()).add(row["latency_ms"], row["output_tokens"] or 0)


def ledger_history(catalog: Catalog, limit: int = HISTORY_CALLS) -> Callable[[Connection], History]:
    """The most recent `limit` successful calls, with their jobs' specs, as a `History`."""

    def q(conn: Connection) -> History:
        rows = conn.execute(
            select(
                attempts.c.model,
                attempts.c.endpoint,
                attempts.c.input_tokens,
                attempts.c.output_tokens,
                attempts.c.latency_ms,
                jobs.c.class_name,
                jobs.c.spec,
            )
            .select_from(attempts.join(jobs, jobs.c.id == attempts.c.job_id))
            .where(attempts.c.status == AttemptStatus.SUCCEEDED.value)
            .order_by(attempts.c.started_at.desc())
            .limit(limit)
        ).mappings()
        history = History()
        for row in rows:
            cls = catalog.classes.get(row["class_name"])
            try:
                spec = JobSpec.model_validate_json(row["spec"])
            except ValueError:
                continue
            max_tokens = spec.max_tokens or (cls.max_tokens if cls is not None else None)
            if max_tokens is None:
                continue
            history.add_call(
                class_name=row["class_name"],
                model=row["model"],
                endpoint=row["endpoint"],
                spec=spec,
                max_tokens=max_tokens,
                row=dict(row),
            )
        return history

    return q


def _total(parts: Iterable[_Sums]) -> _Sums | None:
    total = _Sums()
    for s in parts:
        total.calls += s.calls
        total.actual += s.actual
        total.predicted += s.predicted
    return total if total.calls else None


def _shrink(sums: _Sums | None, prior: float) -> float:
    if sums is None or sums.ratio is None:
        return prior
    n = sums.calls
    return (n * sums.ratio + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Row:
    """Expected traffic and cost on one (class, model, provider)."""

    class_name: str
    model: str
    provider: str
    jobs: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    expected_cost: Decimal = Decimal(0)
    worst_case_cost: Decimal = Decimal(0)
    """What these jobs would cost here at most (every requested token produced)."""
    unpriced_jobs: float = 0.0


@dataclass
class WallTime:
    seconds: float
    bottleneck: str
    parts: dict[str, float]


@dataclass
class NoRoute:
    line_no: int
    custom_id: str | None
    reason: str


@dataclass
class BatchEstimate:
    jobs: int
    rows: list[Row]
    expected_cost: Decimal
    worst_case_cost: Decimal | None
    """None when some job may go to an endpoint of unknown price."""
    worst_by_class: dict[str, Decimal | None]
    unpriced_jobs: float
    wall: WallTime
    basis: dict[str, str]
    """Where each figure came from (history or prior), for the report."""
    no_route: list[NoRoute] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def money(d: Decimal | None) -> str | None:
            return None if d is None else str(d.quantize(Decimal("1e-9")))

        return {
            "jobs": self.jobs,
            "expected_cost": money(self.expected_cost),
            "worst_case_cost": money(self.worst_case_cost),
            "unpriced_jobs": round(self.unpriced_jobs, 3),
            "worst_case_by_class": {k: money(v) for k, v in self.worst_by_class.items()},
            "rows": [
                {
                    "class": r.class_name,
                    "model": r.model,
                    "provider": r.provider,
                    "jobs": round(r.jobs, 3),
                    "input_tokens": round(r.input_tokens),
                    "output_tokens": round(r.output_tokens),
                    "expected_cost": money(r.expected_cost),
                    "worst_case_cost": money(r.worst_case_cost),
                    "unpriced_jobs": round(r.unpriced_jobs, 3),
                }
                for r in self.rows
            ],
            "wall_time_s": round(self.wall.seconds, 3),
            "bottleneck": self.wall.bottleneck,
            "wall_time_parts_s": {k: round(v, 3) for k, v in self.wall.parts.items()},
            "basis": self.basis,
            "no_route": [{"line": n.line_no, "custom_id": n.custom_id, "reason": n.reason} for n in self.no_route],
            "errors": [e.to_json() for e in self.errors],
        }


# ---------------------------------------------------------------------------------------------- estimator
@dataclass(slots=True)
class _Load:
    """Expected traffic on one endpoint, for the wall-time model."""

    jobs: float = 0.0
    limit_tokens: float = 0.0
    busy_s: float = 0.0
    longest_s: float = 0.0


class Estimator:
    def __init__(self, catalog: Catalog, history: History | None = None, *, concurrency: int = 256) -> None:
        self.catalog = catalog
        self.policy = catalog.config.policy
        self.history = history or History()
        self.concurrency = concurrency
        self.checker = SpecChecker(catalog)
        self._live = LiveState(stats=self._live_stats())
        self._ratios: dict[tuple[str, str], float] = {}
        self._scales: dict[str, float] = {}

    # -- calibrated quantities
    def output_ratio(self, class_name: str, model: str) -> float:
        """Expected output tokens over max_tokens: the (class, model)'s history, shrunk toward what the class's
        other models did, shrunk toward the class's configured prior (no call is counted twice)."""
        key = (class_name, model)
        if key not in self._ratios:
            others = _total(s for (c, m), s in self.history.output.items() if c == class_name and m != model)
            class_ratio = _shrink(others, self.catalog.classes[class_name].expected_output_ratio)
            self._ratios[key] = min(1.0, _shrink(self.history.output.get(key), class_ratio))
        return self._ratios[key]

    def input_scale(self, model: str) -> float:
        """Recorded input tokens over `expected_input_tokens`: the model's history, shrunk toward the other
        models' history, shrunk toward 1."""
        if model not in self._scales:
            overall = _shrink(_total(s for m, s in self.history.input.items() if m != model), 1.0)
            self._scales[model] = _shrink(self.history.input.get(model), overall)
        return self._scales[model]

    def latency_s(self, ep: Endpoint, output_tokens: float) -> float:
        sums = self.history.latency.get(ep.slug)
        if sums is not None and sums.calls >= MIN_LATENCY_CALLS:
            return sums.actual / sums.calls / 1000
        return DEFAULT_FIRST_TOKEN_S + output_tokens / DEFAULT_OUTPUT_TPS

    def _live_stats(self) -> dict[str, EndpointStats]:
        """The ledger's latency and throughput, so `sort: latency | throughput` plans as the worker would."""
        out: dict[str, EndpointStats] = {}
        for slug, s in self.history.latency.items():
            if s.calls:
                tps = s.predicted / (s.actual / 1000) if s.actual > 0 else None
                out[slug] = EndpointStats(s.actual / s.calls, tps)
        return out

    # -- the estimate
    def plan_line(self, spec: JobSpec) -> Plan:
        return plan(spec, self.catalog, self.policy, self._live, seed=0)

    def estimate(self, lines: Iterable[Line | LineError], *, default_class: str | None = None) -> BatchEstimate:
        rows: dict[tuple[str, str, str], Row] = {}
        loads: dict[str, _Load] = {}
        worst_by_class: dict[str, Decimal | None] = {}
        expected_total = Decimal(0)
        unpriced = 0.0
        n_jobs = 0
        no_route: list[NoRoute] = []
        errors: list[LineError] = []
        seen: set[str] = set()
        for item in lines:
            if isinstance(item, LineError):
                errors.append(item)
                continue
            spec = item.spec
            if spec.class_ is None and default_class is not None:
                spec = spec.model_copy(update={"class_": default_class})
            if spec.custom_id is not None:
                if spec.custom_id in seen:
                    errors.append(
                        LineError(item.line_no, "duplicate_custom_id", f"custom_id {spec.custom_id!r} appears twice")
                    )
                    continue
                seen.add(spec.custom_id)
            try:
                spec = self.checker.check(spec)
            except InputError as e:
                errors.append(LineError(item.line_no, e.code, e.message, spec.custom_id))
                continue
            p = self.plan_line(spec)
            if not p.candidates:
                no_route.append(NoRoute(item.line_no, spec.custom_id, str(p.error())))
                continue
            n_jobs += 1
            worsts = [c.worst_case_cost for c in p.candidates]
            job_worst = None if any(w is None for w in worsts) else max(w for w in worsts if w is not None)
            prev = worst_by_class.setdefault(p.class_name, Decimal(0))
            worst_by_class[p.class_name] = None if prev is None or job_worst is None else prev + job_worst
            expected_in = expected_input_tokens(spec)
            for cand, odds in p.first_choice():
                ep = cand.endpoint
                tokens_in = expected_in * self.input_scale(ep.model)
                tokens_out = self.output_ratio(p.class_name, ep.model) * p.max_tokens
                row = rows.setdefault((p.class_name, ep.model, ep.provider), Row(p.class_name, ep.model, ep.provider))
                row.jobs += odds
                row.input_tokens += odds * tokens_in
                row.output_tokens += odds * tokens_out
                cost = ep.cost(round(tokens_in), round(tokens_out))
                if cost is None:
                    row.unpriced_jobs += odds
                    unpriced += odds
                else:
                    weighted = cost * Decimal(odds)
                    row.expected_cost += weighted
                    expected_total += weighted
                if cand.worst_case_cost is not None:
                    row.worst_case_cost += cand.worst_case_cost * Decimal(odds)
                load = loads.setdefault(ep.slug, _Load())
                latency = self.latency_s(ep, tokens_out)
                load.jobs += odds
                load.limit_tokens += odds * (tokens_in + p.max_tokens)  # what providers' TPM limits count
                load.busy_s += odds * latency
                load.longest_s = max(load.longest_s, latency)
        worst_total: Decimal | None = Decimal(0)
        for w in worst_by_class.values():
            worst_total = None if worst_total is None or w is None else worst_total + w
        return BatchEstimate(
            jobs=n_jobs,
            rows=sorted(rows.values(), key=lambda r: (r.class_name, r.model, r.provider)),
            expected_cost=expected_total,
            worst_case_cost=worst_total,
            worst_by_class=dict(sorted(worst_by_class.items())),
            unpriced_jobs=unpriced,
            wall=self._wall_time(loads),
            basis=self._basis(),
            no_route=no_route,
            errors=errors,
        )

    def _basis(self) -> dict[str, str]:
        h = self.history
        out_calls = sum(s.calls for s in h.output.values())
        return {
            "output_tokens": (
                f"ledger: {out_calls} recent successful calls, shrunk toward each class's expected_output_ratio"
                if out_calls
                else "prior: each class's expected_output_ratio * max_tokens (no history in the ledger)"
            ),
            "input_tokens": (
                "tokenizer-shaped count, rescaled per model by the ledger's recorded input tokens"
                if out_calls
                else "tokenizer-shaped count (~4 characters a token for English), no ledger correction yet"
            ),
            "routing": "expected first choice of each plan (load-balancing odds); fallbacks not priced",
            "wall_time": f"rate limits, concurrency {self.concurrency} (Little's law), slowest call; a lower bound",
        }

    def _wall_time(self, loads: dict[str, _Load]) -> WallTime:
        parts: dict[str, float] = {}
        groups: dict[str, tuple[int | None, int | None, float, float]] = {}
        for slug, load in loads.items():
            ep = self.catalog.endpoints[slug]
            key, rpm, tpm = self._limit_group(ep)
            _, _, n, toks = groups.get(key, (rpm, tpm, 0.0, 0.0))
            groups[key] = (rpm, tpm, n + load.jobs, toks + load.limit_tokens)
        for key, (rpm, tpm, n, toks) in groups.items():
            t = 0.0
            if rpm:
                t = max(t, max(0.0, n - rpm) / (rpm / 60))
            if tpm:
                t = max(t, max(0.0, toks - tpm) / (tpm / 60))
            if rpm or tpm:
                parts[f"rate limits of {key}"] = t
        parts[f"concurrency {self.concurrency}"] = sum(x.busy_s for x in loads.values()) / max(1, self.concurrency)
        if loads:
            slowest = max(loads, key=lambda s: loads[s].longest_s)
            parts[f"slowest call ({slowest})"] = loads[slowest].longest_s
        if not parts:
            return WallTime(0.0, "nothing to run", parts)
        bottleneck = max(parts, key=lambda k: parts[k])
        return WallTime(parts[bottleneck], bottleneck, parts)

    def _limit_group(self, ep: Endpoint) -> tuple[str, int | None, int | None]:
        """The bucket a call is counted in: the endpoint's own limits if it has any, else its provider's."""
        cfg = next(
            (e for e in self.catalog.config.models[ep.model].endpoints if e.provider == ep.provider),
            None,
        )
        if cfg is not None and (cfg.rpm or cfg.tpm):
            return ep.slug, cfg.rpm, cfg.tpm
        prov = self.catalog.providers[ep.provider]
        return ep.provider, prov.rpm, prov.tpm
