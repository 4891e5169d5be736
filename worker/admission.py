"""Admission: the one atomic Redis step before every provider call, and its counterpart after.

    admit  → the endpoint's circuit is not open, its rate bucket has a request and the tokens, and every
             budget in force (the router key's limit for this period, the batch's `max_total_cost`) can
             hold the call's worst-case cost — then take the tokens and reserve the cost, all or nothing;
    settle → replace the reservation with the real cost, record the outcome in the circuit, and tighten the
             bucket from what the provider said (remaining, limits, `retry-after` on a 429).

Buckets are shared by every worker process (per provider and key; per model when the config sets limits on
the endpoint), so the provider's limit is honoured by the fleet, not per replica. Reservations have an owner
(the attempt id) and an expiry: a reservation whose worker died is kept as spent at its worst case — exactly
as the ledger keeps the abandoned call — and the real cost replaces it if the call is answered after all.
A budget scope missing from Redis (restart, flush, new period) is rebuilt from the store's ledger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

from redis.asyncio import Redis

from shared.catalog import Endpoint
from shared.coalesce import ScriptCoalescer
from shared.config import CircuitConfig, WorkerConfig
from shared.errors import ErrorClass, ProviderError
from shared.money import to_nanos
from worker.providers.base import RateLimitInfo

log = logging.getLogger("routeyard.worker")

Outcome = Literal["ok", "fail", "neutral", "limited"]
PROBE_TTL_MS = 60_000

# what a failed call says about the endpoint's health
_CIRCUIT_FAILURES = {ErrorClass.UPSTREAM, ErrorClass.TIMEOUT, ErrorClass.CONNECTION, ErrorClass.BAD_RESPONSE}


def outcome_of(error: ProviderError | None) -> Outcome:
    if error is None:
        return "ok"
    if error.error_class is ErrorClass.RATE_LIMITED:
        return "limited"
    return "fail" if error.error_class in _CIRCUIT_FAILURES else "neutral"


@dataclass(slots=True)
class BudgetScope:
    """A spend limit the call must fit in: `key:<id>` per period, or `batch:<id>`."""

    name: str
    limit: Decimal
    period: str
    """Changes when the limit resets (the scope is then rebuilt from the ledger); '' = never."""
    spent: Callable[[], Awaitable[Decimal]]
    """Spend so far from the ledger, to (re)build the scope."""
    include_byok: bool = True
    """Whether upstream cost of a BYOK call counts here (a router key's `include_byok_in_limit`); batch
    budgets count every call's cost."""

    def charge(self, billed_to: str, cost: Decimal | None, fee: Decimal | None) -> Decimal | None:
        """What a call costs against this scope: a router key pays the cost of pooled calls, and of BYOK calls
        only the fee (plus the cost if `include_byok`); a batch counts the cost. None: unknown."""
        if not self.name.startswith("key:") or billed_to != "byok":
            return cost
        if not self.include_byok:
            return fee
        return None if fee is None or cost is None else fee + cost


@dataclass(slots=True)
class Ticket:
    attempt_id: str
    slug: str
    bucket: str
    scopes: list[tuple[str, int]] = field(default_factory=list)
    """(scope, reserved nano-dollars)."""
    probe: bool = False


@dataclass(slots=True, frozen=True)
class Denial:
    kind: Literal["health", "rate", "budget", "unpriced"]
    wait_s: float = 0.0
    scope: str | None = None
    detail: str = ""


def _lua(name: str) -> str:
    return resources.files("shared").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def bucket_id(endpoint: Endpoint, key_ref: str) -> str:
    base = f"{endpoint.provider}|{key_ref}"
    return f"{base}|{endpoint.upstream_model}" if endpoint.limits_per_model else base


class Admission:
    def __init__(self, redis: Redis, prefix: str, circuits: CircuitConfig, worker: WorkerConfig) -> None:
        self.redis = redis
        self.prefix = prefix
        self.circuits = circuits
        self.worker = worker
        self._admit = redis.register_script(_lua("admit"))
        self._settle = redis.register_script(_lua("settle"))
        self._batched = ScriptCoalescer(redis)
        self._ok_pending: dict[str, int] = {}
        """Successes with nothing else to settle, counted per endpoint and sent once a second (and before any
        failure of the same endpoint, so consecutive-failure counts stay exact)."""
        self._circuit_args = [
            circuits.consecutive_failures,
            circuits.failure_rate,
            int(circuits.window_s * 1000),
            circuits.min_calls,
            int(circuits.cooldown_s * 1000),
            int(circuits.max_cooldown_s * 1000),
        ]

    async def admit(
        self,
        endpoint: Endpoint,
        key_ref: str,
        attempt_id: str,
        *,
        tokens: int,
        charges: list[tuple[BudgetScope, Decimal | None]],
        timeout_s: float,
    ) -> Ticket | Denial:
        """`charges`: each budget scope in force with what the call may cost against it at worst."""
        bucket = bucket_id(endpoint, key_ref)
        reserved = [(s.name, -1 if amount is None else to_nanos(amount)) for s, amount in charges]
        inits: dict[str, int] = {}
        for _ in range(len(charges) + 1):
            args: list[Any] = [
                self.prefix,
                endpoint.slug,
                bucket,
                endpoint.rpm or 0,
                endpoint.tpm or 0,
                self.worker.rate_safety,
                tokens,
                attempt_id,
                0,
                int((timeout_s + self.worker.reservation_margin_s) * 1000),
                PROBE_TTL_MS,
                len(charges),
            ]
            for (s, _), (_, nanos) in zip(charges, reserved, strict=True):
                args += [s.name, to_nanos(s.limit), s.period, inits.get(s.name, -1), nanos]
            res = await self._batched.call(self._admit, args)
            if int(res[0]) == 1:
                return Ticket(attempt_id, endpoint.slug, bucket, reserved, bool(int(res[1])))
            kind = _s(res[1])
            if kind == "init":
                name = _s(res[2])
                scope = next(s for s, _ in charges if s.name == name)
                inits[name] = to_nanos(await scope.spent())
                continue
            if kind in ("health", "rate"):
                return Denial(kind, wait_s=int(res[2]) / 1000)  # type: ignore[arg-type]
            if kind == "budget":
                used, limit = int(res[3]) / 1e9, int(res[4]) / 1e9
                return Denial("budget", scope=_s(res[2]), detail=f"${used:.6f} of ${limit:.6f} used")
            return Denial("unpriced", scope=_s(res[2]), detail="the price is unknown, so the limit cannot be enforced")
        raise RuntimeError("budget scope initialisation did not converge")

    async def settle(
        self,
        ticket: Ticket,
        *,
        error: ProviderError | None,
        charges: list[Decimal | None] | None = None,
        rate: RateLimitInfo | None = None,
    ) -> None:
        """Replace each reservation with the call's real charge against its scope (`charges`, in the ticket's
        scope order; None = unknown, keep the reservation; omitted = nothing, a failed call) and record the
        outcome."""
        outcome = outcome_of(error)
        if outcome == "ok" and not ticket.scopes and rate is None and not ticket.probe:
            self._ok_pending[ticket.slug] = self._ok_pending.get(ticket.slug, 0) + 1
            return
        if outcome == "fail" and ticket.slug in self._ok_pending:
            self._send_successes(ticket.slug)  # queued ahead of this failure in the same pipeline
        retry_ms = -1 if error is None or error.retry_after is None else int(error.retry_after * 1000)
        if outcome == "ok":
            retry_ms = 1
        per_scope: list[Any] = []
        for i, (name, nanos) in enumerate(ticket.scopes):
            real = Decimal(0) if charges is None else charges[i]
            per_scope += [name, max(0, nanos) if real is None else to_nanos(real), nanos]
        args: list[Any] = [
            self.prefix,
            ticket.slug,
            ticket.bucket,
            outcome,
            retry_ms,
            _int_or(rate.remaining_requests if rate else None),
            _int_or(rate.remaining_tokens if rate else None),
            _int_or(rate.limit_requests if rate else None),
            _int_or(rate.limit_tokens if rate else None),
            ticket.attempt_id,
            0,
            0,
            len(ticket.scopes),
            *per_scope,
            *self._circuit_args,
        ]
        result = _s(await self._batched.call(self._settle, args))
        if result == "opened":
            log.warning("circuit opened for %s after %s", ticket.slug, error.message if error else "failures")
        elif result == "closed":
            log.info("circuit closed for %s: probe succeeded", ticket.slug)

    def _send_successes(self, slug: str) -> asyncio.Future[Any]:
        count = self._ok_pending.pop(slug)
        args = [self.prefix, slug, "", "ok", count, -1, -1, -1, -1, "", 0, 0, 0, *self._circuit_args]
        return self._batched.call(self._settle, args)

    async def flush_successes(self) -> None:
        """Send the successes counted since the last flush (the dispatcher calls this every second)."""
        if self._ok_pending:
            await asyncio.gather(*(self._send_successes(slug) for slug in list(self._ok_pending)))

    async def open_circuits(self) -> frozenset[str]:
        """Endpoints whose circuit is open and not yet due a probe: the planner leaves them out."""
        t = await self.redis.time()
        now_ms = int(t[0]) * 1000 + int(t[1]) // 1000
        members = await self.redis.zrangebyscore(f"{self.prefix}cb:open", now_ms, "+inf")
        return frozenset(_s(m) for m in members)

    async def reservations_outstanding(self, scope: str) -> int:
        return int(await self.redis.zcard(f"{self.prefix}bud:{scope}:res"))

    async def reclaim_expired(self) -> int:
        """Move reservations whose owner is gone (expired) to `:conv`: they stay spent at their worst case
        until the call is answered or forever. Returns how many were reclaimed."""
        t = await self.redis.time()
        now_ms = int(t[0]) * 1000 + int(t[1]) // 1000
        moved = 0
        async for key in self.redis.scan_iter(match=f"{self.prefix}bud:*:res", count=500):
            expired = await self.redis.zrangebyscore(key, "-inf", now_ms)
            if not expired:
                continue
            base = _s(key)[: -len(":res")]
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(key, *expired)
                pipe.zadd(f"{base}:conv", {m: now_ms for m in expired})
                await pipe.execute()
            moved += len(expired)
        return moved


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int_or(value: int | None) -> int:
    return -1 if value is None else int(value)
