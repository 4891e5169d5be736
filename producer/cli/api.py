"""`routeyard api`: the HTTP gateway (routeyard's API, the OpenAI Batch/Files API, webhooks) under uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer

from producer.cli.app import ConfigOption, app, config, settings, setup_logging


@app.command()
def api(
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 in a container)"),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, help="uvicorn worker processes"),
    cfg: Path | None = ConfigOption,
    log_level: str = typer.Option("info"),
) -> None:
    """Serve the HTTP API against DATABASE_URL and REDIS_URL. Requests authenticate with a router API key
    or the bootstrap admin token ROUTEYARD_ADMIN_TOKEN. Run as many replicas as you like."""
    setup_logging(log_level)
    import uvicorn

    config(cfg)  # fail now, with the config error, rather than in every worker process
    if cfg is not None:
        import os

        os.environ["ROUTEYARD_CONFIG"] = str(cfg)
    uvicorn.run(
        "producer.cli.api:make_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy_headers=True,
    )


def make_app() -> object:
    """uvicorn's factory (one per worker process)."""
    from producer.gateway import create_app

    # router API keys from the store, and the bootstrap admin token when ROUTEYARD_ADMIN_TOKEN is set
    return create_app(settings(), config(None))
