"""Long-running processes: the worker and the simulated provider farm."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from producer.cli.app import ConfigOption, app, config, settings, setup_logging


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with uvicorn[standard]): the worker is event-loop bound at hundreds of
    calls in flight, and uvloop's loop and transports cost a fraction of asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@app.command()
def worker(
    concurrency: int = typer.Option(256, help="provider calls in flight in this process"),
    grace: float = typer.Option(25.0, help="seconds running jobs get to finish on SIGTERM"),
    cfg: Path | None = ConfigOption,
    log_level: str = typer.Option("info"),
    log_format: str = typer.Option("text", "--log-format", help="text | json (one object per line, with job ids)"),
    metrics_port: int | None = typer.Option(None, "--metrics-port", help="serve Prometheus metrics on this port"),
) -> None:
    """Run a worker against REDIS_URL and DATABASE_URL. Scale out by running more, anywhere."""
    from arq.connections import ArqRedis

    from worker.app import RouteyardWorker

    s = settings()
    conf = config(cfg)
    w: RouteyardWorker | None = None

    def secrets() -> list[str]:
        return w.runtime.secrets if w is not None and w.runtime is not None else []

    setup_logging(log_level, log_format, secrets if log_format == "json" else None)

    async def make_pool() -> ArqRedis:
        pool: ArqRedis = ArqRedis.from_url(s.redis_url)
        return pool

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    pool = loop.run_until_complete(make_pool())
    w = RouteyardWorker(
        settings=s,
        config=conf,
        redis_pool=pool,
        max_in_flight=concurrency,
        grace_s=grace,
        metrics_port=metrics_port,
    )
    w.run()


@app.command()
def simulate(
    port: int = typer.Option(9100),
    host: str = typer.Option("127.0.0.1"),
    farm_config: Path | None = typer.Option(None, "--farm-config", help="TOML of provider behaviours"),
    latency_ms: float = typer.Option(80.0, help="base latency of every simulated provider"),
    cfg: Path | None = ConfigOption,
) -> None:
    """Serve the simulated provider farm on a port: the config's `sim://` providers, speaking the OpenAI,
    Anthropic and Gemini wire formats. Point workers at it with ROUTEYARD_SIM_URL=http://HOST:PORT."""
    from shared.catalog import Catalog
    from worker.farm import FarmConfig, serve
    from worker.runtime import farm_config_for

    overrides = FarmConfig.from_toml(farm_config) if farm_config else None
    fc = farm_config_for(Catalog.from_config(config(cfg)), overrides, latency_ms=latency_ms)
    typer.echo(f"simulated providers on http://{host}:{port}: {', '.join(fc.providers)}", err=True)
    serve(fc, host=host, port=port)
