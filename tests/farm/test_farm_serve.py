"""The farm over a real loopback port, under uvicorn with the settings `serve()` uses."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from farm_helpers import KEY, quiet_config

import worker.farm.__main__ as farm_main
from worker.farm import Farm, ProviderBehaviour
from worker.farm.serve import uvicorn_config


@asynccontextmanager
async def running(farm: Farm) -> AsyncIterator[str]:
    """Serve `farm` on a free loopback port for the duration of the block; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(farm, port=port))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn failed to start"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=5)
        sock.close()


async def test_serves_over_a_real_port() -> None:
    farm = Farm(quiet_config(openai=ProviderBehaviour(rpm=10)))
    async with running(farm) as url, httpx.AsyncClient(base_url=url) as client:
        r = await client.post(
            "/openai/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20},
            headers={"authorization": f"Bearer {KEY}", "x-routeyard-job-id": "real"},
        )
        missing = await client.get("/nowhere")
    assert r.status_code == 200
    assert r.json()["object"] == "chat.completion"
    assert r.headers["x-ratelimit-remaining-requests"] == "9"
    assert missing.status_code == 404
    (entry,) = farm.record.find(job_id="real")
    assert entry.completion_tokens == r.json()["usage"]["completion_tokens"]


async def test_a_hang_over_a_real_port_ends_when_the_client_gives_up() -> None:
    farm = Farm(quiet_config(openai=ProviderBehaviour(p_hang=1.0, hang_s=30.0)))
    started = time.perf_counter()
    async with running(farm) as url, httpx.AsyncClient(base_url=url, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                "/openai/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
                headers={"authorization": f"Bearer {KEY}"},
            )
    # The server noticed the disconnect and shut down without sitting out the 30 s hang.
    assert time.perf_counter() - started < 5.0
    assert [e.outcome for e in farm.record.requests] == ["hung"]


def test_module_entry_point(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    seen: dict[str, Any] = {}

    def fake_serve(config: Any, host: str, port: int, log_level: str) -> None:
        seen.update(config=config, host=host, port=port, log_level=log_level)

    monkeypatch.setattr(farm_main, "serve", fake_serve)
    path = tmp_path / "farm.toml"
    path.write_text('seed = 3\n[providers.solo]\nwire = "gemini"\n')
    farm_main.main(["--port", "9123", "--config", str(path), "--no-request-log"])
    assert seen["port"] == 9123 and seen["host"] == "127.0.0.1"
    assert list(seen["config"].providers) == ["solo"] and seen["config"].seed == 3
    assert seen["config"].record_requests is False
    farm_main.main([])
    assert "google" in seen["config"].providers and seen["port"] == 9100
