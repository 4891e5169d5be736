"""Serve a farm over a real port with uvicorn (`routeyard simulate`, `python -m worker.farm`)."""

from __future__ import annotations

import importlib.util
from typing import Any

import uvicorn

from worker.farm.app import Farm
from worker.farm.behaviour import FarmConfig


def uvicorn_config(app: Farm, host: str = "127.0.0.1", port: int = 9100, log_level: str = "warning") -> uvicorn.Config:
    """The farm's fastest settings: httptools and uvloop when installed, no access log, no lifespan.

    A short graceful-shutdown timeout, because a simulated hang may otherwise hold shutdown for `hang_s`.
    """
    fast: dict[str, Any] = {}
    if importlib.util.find_spec("httptools") is not None:
        fast["http"] = "httptools"
    if importlib.util.find_spec("uvloop") is not None:
        fast["loop"] = "uvloop"
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        **fast,
    )


def serve(
    config: FarmConfig | None = None, host: str = "127.0.0.1", port: int = 9100, log_level: str = "warning"
) -> None:
    """Run a farm (the built-in default providers unless `config` is given) until interrupted."""
    uvicorn.Server(uvicorn_config(Farm(config), host, port, log_level)).run()
