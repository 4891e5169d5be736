"""Helpers for routeyard's tests (a module, not conftest, so tests can import it by name)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REDIS_URL = os.environ.get("ROUTEYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN_URL = os.environ.get("ROUTEYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parent.parent


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def redis_available() -> bool:
    return _port_open("127.0.0.1", 6379)


def pg_available() -> bool:
    return _port_open("127.0.0.1", 5432)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1.0)
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def farm_in_thread(farm: Any) -> Iterator[str]:
    """Serve `farm` on a free loopback port from a thread; yields its base URL."""
    import uvicorn

    from worker.farm.serve import uvicorn_config

    port = free_port()
    server = uvicorn.Server(uvicorn_config(farm, port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/_farm/stats")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def routeyard_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "producer.cli", *args]


def start_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **env}
    fh = log.open("wb")
    return subprocess.Popen(args, env=full_env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)


def stop_process(proc: subprocess.Popen[bytes], sig: int | None = None, timeout: float = 30.0) -> int:
    import signal as _signal

    if proc.poll() is None:
        proc.send_signal(sig if sig is not None else _signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


TEST_CONFIG = """
[routing]
default_class = "basic"
max_attempts = 6
retries_per_endpoint = 1

[providers.alpha]
base_url = "sim://alpha"
[providers.beta]
base_url = "sim://beta"
[providers.gamma]
wire = "anthropic"
base_url = "sim://gamma"
data_collection = "allow"

[models.small]
context_length = 4000
endpoints = [
  { provider = "alpha", upstream_model = "small-a", price = { input = "1.00", output = "2.00" } },
  { provider = "beta", upstream_model = "small-b", price = { input = "1.00", output = "2.00" } },
]
[models.big]
context_length = 100000
endpoints = [{ provider = "gamma", upstream_model = "big-g", price = { input = "3.00", output = "15.00" } }]

[classes.basic]
models = ["small", "big"]
max_tokens = 200
[classes.bigonly]
models = ["big"]
max_tokens = 200
"""


def make_config(text: str = TEST_CONFIG) -> Any:
    from shared.config import parse_config

    return parse_config(text, "test config")


def quiet_farm(config: Any = None, **changes: dict[str, Any]) -> Any:
    """A zero-latency farm for a config's simulated providers (default TEST_CONFIG); `changes` patch
    behaviours per provider."""
    from shared.catalog import Catalog
    from worker.farm import Farm, FarmConfig
    from worker.runtime import farm_config_for

    base = farm_config_for(Catalog.from_config(config or make_config()), latency_ms=0)
    providers = {name: b.patched(changes.get(name, {})) for name, b in base.providers.items()}
    return Farm(FarmConfig(seed=1, providers=providers))
