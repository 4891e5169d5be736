"""Building a worker's runtime: adapters and their senders, credentials, the in-process farm.

HTTP: real providers (and a farm reached over loopback) share one aiohttp session (see
`worker/providers/transport.py` for why); `sim://` providers without `ROUTEYARD_SIM_URL` go through
`httpx.ASGITransport` straight into an in-process farm. The adapters are the same either way.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import httpx

from shared.catalog import Catalog
from shared.config import SIM_SCHEME, RouteyardConfig
from shared.queue import JobQueue
from shared.settings import Settings
from shared.store import Store
from worker.admission import Admission
from worker.context import Runtime
from worker.credentials import ByokKeyring, CredentialSource
from worker.providers import ADAPTERS, ProviderAdapter
from worker.providers.transport import AiohttpSender, HttpxSender, Sender
from worker.stats import FleetStatsRefresher

FARM_HOST = "http://farm"


def _box(settings: Settings) -> Any:
    """The master-key box for BYOK secrets, or None when no key is configured yet (no BYOK keys can exist)."""
    from shared.crypto import load_box

    try:
        return load_box(settings.home)
    except OSError:
        return None


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


def sim_name(base_url: str) -> str:
    return base_url[len(SIM_SCHEME) :].strip("/")


def _sim_base(root: str, name: str, wire: str) -> str:
    return f"{root.rstrip('/')}/{name}" + ("/v1" if wire == "openai" else "")


def farm_config_for(catalog: Catalog, overrides: Any = None, *, latency_ms: float = 80.0) -> Any:
    """The farm that plays this config's `sim://` providers: each serves exactly the upstream models the
    catalog routes to it, with the catalog's context windows, so the simulation answers 404 and context
    errors where the real provider would. A farm config file overrides behaviour per provider."""
    from worker.farm import FarmConfig, ProviderBehaviour

    providers: dict[str, Any] = {}
    for name, prov in catalog.providers.items():
        if not prov.simulated:
            continue
        eps = [e for e in catalog.endpoints.values() if e.provider == name]
        behaviour = ProviderBehaviour(
            wire=prov.wire,
            models=sorted({e.upstream_model for e in eps}) or ["*"],
            context_length={e.upstream_model: e.context_length for e in eps} or {"*": 128_000},
            latency_ms=latency_ms,
            jitter_ms=latency_ms / 2,
            ms_per_output_token=0.5 if latency_ms else 0.0,
        )
        override = overrides.providers.get(sim_name(prov.base_url)) if overrides is not None else None
        if override is not None:
            behaviour = behaviour.patched({k: getattr(override, k) for k in override.model_fields_set})
        providers[sim_name(prov.base_url)] = behaviour
    seed = overrides.seed if overrides is not None else 0
    record = overrides.record_requests if overrides is not None else True
    return FarmConfig(seed=seed, providers=providers, record_requests=record)


def build_runtime(
    settings: Settings,
    config: RouteyardConfig,
    store: Store,
    queue: JobQueue,
    *,
    worker_id: str | None = None,
    farm: Any = None,
    env: dict[str, str] | None = None,
    max_connections: int = 2048,
) -> Runtime:
    """Wire adapters to clients. `farm`: an in-process farm to serve `sim://` providers (built from the
    config when needed and not given)."""
    catalog = Catalog.from_config(config)
    queue.lease_ms = int(config.worker.lease_s * 1000)
    clients: list[Sender] = []
    network: Sender | None = None
    asgi: Sender | None = None
    adapters: dict[str, ProviderAdapter] = {}
    for name, prov in config.providers.items():
        if prov.simulated and settings.sim_url is None:
            if farm is None:
                from worker.farm import Farm, FarmConfig

                overrides = FarmConfig.from_toml(settings.farm_config_path) if settings.farm_config_path else None
                farm = Farm(farm_config_for(catalog, overrides))
            if asgi is None:
                asgi = HttpxSender(httpx.AsyncClient(transport=httpx.ASGITransport(app=farm)))
                clients.append(asgi)
            sender, base = asgi, _sim_base(FARM_HOST, sim_name(prov.base_url), prov.wire)
        else:
            if network is None:
                network = AiohttpSender(max_connections)
                clients.append(network)
            base = (
                _sim_base(settings.sim_url, sim_name(prov.base_url), prov.wire)
                if prov.simulated and settings.sim_url
                else prov.base_url
            )
            sender = network
        adapters[name] = ADAPTERS[prov.wire](name, prov, sender, base)
    rt = Runtime(
        settings=settings,
        config=config,
        catalog=catalog,
        store=store,
        queue=queue,
        adapters=adapters,
        credentials=CredentialSource(config, env, keyring=ByokKeyring(_box(settings))),
        worker_id=worker_id or new_worker_id(),
        admission=Admission(queue.redis, queue.keys.prefix, config.circuits, config.worker),
        clients=clients,
        farm=farm,
    )
    rt.stats_refresher = FleetStatsRefresher(
        store, rt.stats, window_s=config.routing.stats_window_s, every_s=config.routing.stats_refresh_s
    )
    rt.stats_refresher.ensure_started()  # seeded before the first claim when built on the event loop
    return rt
