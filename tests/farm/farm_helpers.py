"""Helpers for the farm tests: a fake clock, a quiet config, and a client that speaks all three wires.

A module of its own (not conftest) so test modules can import it by a name no other test tree uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx

from worker.farm import Farm, FarmConfig, ProviderBehaviour

KEY = "sk-test-key"


class FakeClock:
    """An injectable clock that only moves when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def quiet_config(seed: int = 0, **providers: ProviderBehaviour) -> FarmConfig:
    """A farm with no latency: one provider per wire unless others are given."""
    if not providers:
        providers = {
            "openai": ProviderBehaviour(wire="openai"),
            "anthropic": ProviderBehaviour(wire="anthropic"),
            "google": ProviderBehaviour(wire="gemini"),
        }
    return FarmConfig(seed=seed, providers=providers)


class FarmClient:
    """Speaks each wire format to a farm with minimal ceremony; `http` is the raw httpx client."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def openai(
        self,
        provider: str = "openai",
        prompt: str = "Hello there",
        *,
        model: str = "gpt-4o-mini",
        max_tokens: int | None = 64,
        key: str | None = KEY,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> httpx.Response:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        sent = dict(headers or {})
        if key is not None:
            sent["authorization"] = f"Bearer {key}"
        return await self.http.post(f"/{provider}/v1/chat/completions", json=body, headers=sent)

    async def anthropic(
        self,
        provider: str = "anthropic",
        prompt: str = "Hello there",
        *,
        model: str = "claude-sonnet-4",
        max_tokens: int | None = 64,
        key: str | None = KEY,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> httpx.Response:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        sent = {"anthropic-version": "2023-06-01", **(headers or {})}
        if key is not None:
            sent["x-api-key"] = key
        return await self.http.post(f"/{provider}/v1/messages", json=body, headers=sent)

    async def gemini(
        self,
        provider: str = "google",
        prompt: str = "Hello there",
        *,
        model: str = "gemini-2.0-flash",
        max_tokens: int | None = 64,
        key: str | None = KEY,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> httpx.Response:
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": prompt}]}], **extra}
        if max_tokens is not None:
            body["generationConfig"] = {"maxOutputTokens": max_tokens}
        sent = dict(headers or {})
        if key is not None:
            sent["x-goog-api-key"] = key
        return await self.http.post(f"/{provider}/v1beta/models/{model}:generateContent", json=body, headers=sent)


Connect = Callable[[Farm], AbstractAsyncContextManager[FarmClient]]


@asynccontextmanager
async def connect_to(farm: Farm) -> AsyncIterator[FarmClient]:
    transport = httpx.ASGITransport(app=farm)
    async with httpx.AsyncClient(transport=transport, base_url="http://farm") as http:
        yield FarmClient(http)


MakeFarm = Callable[..., Farm]
