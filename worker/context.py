"""The worker's runtime: everything a job needs, built once per process and passed explicitly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.catalog import Catalog
from shared.config import RouteyardConfig
from shared.events import EventSink, NullSink
from shared.queue import JobQueue
from shared.settings import Settings
from shared.store import Store
from worker.credentials import CredentialSource
from worker.providers import ProviderAdapter
from worker.router import LiveState
from worker.stats import EndpointStatsBook, FleetStatsRefresher


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
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    farm: Any = None
    """The in-process simulated farm, when `sim://` providers are served in process."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    stats: EndpointStatsBook = field(default_factory=EndpointStatsBook)
    events: EventSink = field(default_factory=NullSink)
    """Told of every terminal write that won (webhooks, metrics)."""
    stats_refresher: FleetStatsRefresher | None = None
    """Seeds and refreshes `stats` from the ledger (started on the event loop on first use)."""

    @property
    def secrets(self) -> list[str]:
        return self.credentials.secrets()

    def live_state(self) -> LiveState:
        if self.stats_refresher is not None:
            self.stats_refresher.ensure_started()
        return LiveState(
            stats=self.stats.snapshot(),
            disabled_providers=self.credentials.missing(),
        )

    async def aclose(self) -> None:
        if self.stats_refresher is not None:
            await self.stats_refresher.stop()
        for client in self.clients:
            await client.aclose()
