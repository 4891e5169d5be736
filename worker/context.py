"""The worker's runtime: everything a job needs, built once per process and passed explicitly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from shared.audit import DenialBuffer
from shared.catalog import Catalog
from shared.config import PolicyConfig, RouteyardConfig
from shared.events import EventSink, NullSink
from shared.governance import policy_for_key
from shared.keys import ApiKey, get_key
from shared.periods import period_bounds
from shared.queue import JobQueue
from shared.settings import Settings
from shared.spend import key_budget
from shared.store import Store
from shared.store.records import ClaimedJob
from shared.tables import Batch
from shared.timeutil import utcnow
from worker.admission import Admission, BudgetScope
from worker.credentials import CredentialSource
from worker.providers import ProviderAdapter
from worker.providers.transport import Sender
from worker.router import LiveState
from worker.stats import EndpointStatsBook, FleetStatsRefresher

batches = Batch.__table__  # type: ignore[attr-defined]
LIVE_STATE_TTL_S = 0.25
BUDGET_CACHE_S = 10.0
"""How long a worker trusts a batch's `max_total_cost` or a router key's settings before reading them again
(a raised limit or a disabled key takes effect within this)."""


def key_period_tag(key: ApiKey) -> str:
    """What a key's spend counter in Redis counts: the current period, and whether BYOK upstream cost is in it.
    A change of either (a new period, `limit_reset` or `include_byok_in_limit` changed) starts the counter
    afresh from the ledger, and resumes jobs held by the old one."""
    start, _ = period_bounds(key.limit_reset, utcnow())
    return start.isoformat() + ("+byok" if key.include_byok_in_limit else "")


@dataclass(frozen=True, slots=True)
class KeyView:
    """What the worker needs of a job's router key, cached: the key, the policy narrowed by it, and the
    providers none of its credentials can call."""

    key: ApiKey | None
    policy: PolicyConfig
    missing: frozenset[str]
    fetched: float


@dataclass
class Runtime:
    settings: Settings
    config: RouteyardConfig
    catalog: Catalog
    store: Store
    queue: JobQueue
    adapters: dict[str, ProviderAdapter]
    credentials: CredentialSource
    worker_id: str
    admission: Admission
    clients: list[Sender] = field(default_factory=list)
    farm: Any = None
    """The in-process simulated farm, when `sim://` providers are served in process."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    stats: EndpointStatsBook = field(default_factory=EndpointStatsBook)
    events: EventSink = field(default_factory=NullSink)
    """Told of every terminal write that won (webhooks, metrics)."""
    unhealthy: frozenset[str] = frozenset()
    """Endpoints with an open circuit, refreshed from Redis by the dispatcher."""
    call_slots: asyncio.Semaphore | None = None
    """Bounds provider calls in flight (the worker's concurrency); jobs being claimed or recorded hold none."""
    denials: DenialBuffer = field(default_factory=DenialBuffer)
    """Governance exclusions counted in memory, flushed to the audit table every few seconds."""
    _batch_limits: dict[str, tuple[float, Decimal | None]] = field(default_factory=dict)
    _keys: dict[str, KeyView] = field(default_factory=dict)
    _live: dict[frozenset[str] | None, tuple[float, LiveState]] = field(default_factory=dict)
    stats_refresher: FleetStatsRefresher | None = None
    """Seeds and refreshes `stats` from the ledger (started on the event loop on first use)."""

    @property
    def secrets(self) -> list[str]:
        return self.credentials.secrets()

    def live_state(self, missing: frozenset[str] | None = None) -> LiveState:
        """What the router may know of the world now. Rebuilt at most every `LIVE_STATE_TTL_S` per set of
        missing providers: the statistics move slowly, and a snapshot per job cost more than the plan."""
        key = missing
        cached = self._live.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < LIVE_STATE_TTL_S and cached[1].unhealthy is self.unhealthy:
            return cached[1]
        state = self._build_live_state(missing)
        self._live[key] = (now, state)
        return state

    def _build_live_state(self, missing: frozenset[str] | None) -> LiveState:
        if self.stats_refresher is not None:
            self.stats_refresher.ensure_started()
        return LiveState(
            unhealthy=self.unhealthy,
            stats=self.stats.snapshot(),
            disabled_providers=self.credentials.missing() if missing is None else missing,
        )

    async def key_view(self, api_key_id: str | None) -> KeyView:
        if api_key_id is None:
            return KeyView(None, self.config.policy, self.credentials.missing(), 0.0)
        view = self._keys.get(api_key_id)
        if view is not None and time.monotonic() - view.fetched < BUDGET_CACHE_S:
            return view
        key = await self.store.read(get_key(api_key_id))
        view = KeyView(
            key,
            policy_for_key(self.config.policy, key),
            self.credentials.missing_for(api_key_id, key.team if key else None),
            time.monotonic(),
        )
        self._keys[api_key_id] = view
        return view

    async def budget_scopes(self, job: ClaimedJob) -> list[BudgetScope]:
        """The shared budgets this job's calls must fit in: its router key's limit for the current period and
        its batch's `max_total_cost`."""
        scopes: list[BudgetScope] = []
        if job.api_key_id is not None:
            key = (await self.key_view(job.api_key_id)).key
            if key is not None and key.limit is not None:
                scopes.append(
                    BudgetScope(
                        f"key:{key.id}",
                        key.limit,
                        key_period_tag(key),
                        self._key_committed(key.id),
                        include_byok=key.include_byok_in_limit,
                    )
                )
        if job.batch_id is not None:
            limit = await self._batch_limit(job.batch_id)
            if limit is not None:
                scopes.append(BudgetScope(f"batch:{job.batch_id}", limit, "", self._batch_spent(job.batch_id)))
        return scopes

    def _key_committed(self, key_id: str) -> Callable[[], Awaitable[Decimal]]:
        async def committed() -> Decimal:
            budget = await self.store.read(key_budget(key_id))
            return budget.committed if budget is not None else Decimal(0)

        return committed

    async def _batch_limit(self, batch_id: str) -> Decimal | None:
        cached = self._batch_limits.get(batch_id)
        if cached is not None and time.monotonic() - cached[0] < BUDGET_CACHE_S:
            return cached[1]

        def q(conn: Connection) -> Decimal | None:
            value: Decimal | None = conn.execute(
                select(batches.c.max_total_cost).where(batches.c.id == batch_id)
            ).scalar()
            return value

        limit = await self.store.read(q)
        self._batch_limits[batch_id] = (time.monotonic(), limit)
        return limit

    def _batch_spent(self, batch_id: str) -> Callable[[], Awaitable[Decimal]]:
        async def spent() -> Decimal:
            def q(conn: Connection) -> Decimal:
                value = conn.execute(select(batches.c.cost_total).where(batches.c.id == batch_id)).scalar()
                return value or Decimal(0)

            return await self.store.read(q)

        return spent

    async def scope_state(self, scope: str) -> tuple[Decimal | None, str] | None:
        """Current (limit, period) of a budget scope, for resuming held jobs."""
        kind, _, ident = scope.partition(":")
        if kind == "batch":

            def q(conn: Connection) -> Any:
                return conn.execute(select(batches.c.max_total_cost).where(batches.c.id == ident)).first()

            row = await self.store.read(q)
            self._batch_limits.pop(ident, None)
            return None if row is None else (row[0], "")
        if kind == "key":
            self._keys.pop(ident, None)
            key = await self.store.read(get_key(ident))
            if key is None:
                return None
            return key.limit, key_period_tag(key)
        return None

    async def aclose(self) -> None:
        if self.stats_refresher is not None:
            await self.stats_refresher.stop()
        for client in self.clients:
            await client.aclose()
