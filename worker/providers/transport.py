"""How adapters send a request: one small interface, two implementations.

- `AiohttpSender`: the network path. At hundreds of calls in flight the worker is bound by per-request CPU;
  measured in the latency benchmark, the httpx layer over an aiohttp transport cost as much as aiohttp
  itself, and httpx's own pool collapses at this concurrency (16% of the ideal rate at 500 in flight).
- `HttpxSender`: any httpx client — `ASGITransport` into the in-process farm (embedded mode), `MockTransport`
  in tests — so the same adapter code runs everywhere.

Both return a `RawResponse` and raise `ConnectionFailed` or `ProviderTimeout`, nothing transport-specific.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import httpx

from shared.errors import ConnectionFailed, ProviderTimeout


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: Mapping[str, str]
    """Case-insensitive."""
    body: bytes
    reason: str = ""


class Sender(Protocol):
    async def post(
        self, url: str, headers: dict[str, str], body: bytes, *, timeout_s: float, connect_timeout_s: float
    ) -> RawResponse: ...

    async def aclose(self) -> None: ...


class AiohttpSender:
    def __init__(self, max_connections: int = 2048) -> None:
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max, limit_per_host=0, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    async def post(
        self, url: str, headers: dict[str, str], body: bytes, *, timeout_s: float, connect_timeout_s: float
    ) -> RawResponse:
        timeout = self._timeouts.get((timeout_s, connect_timeout_s))
        if timeout is None:  # one per provider setting: building it per call showed up in profiles
            timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
            self._timeouts[(timeout_s, connect_timeout_s)] = timeout
        try:
            async with self._client().post(url, data=body, headers=headers, timeout=timeout) as resp:
                data = await resp.read()
                return RawResponse(resp.status, resp.headers, data, resp.reason or "")
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ProviderTimeout(f"no answer within {timeout_s:g}s") from None
        except aiohttp.ClientConnectorError as e:
            raise ConnectionFailed(f"cannot connect: {e.os_error.strerror or type(e.os_error).__name__}") from None
        except aiohttp.ClientError as e:
            raise ConnectionFailed(f"{type(e).__name__}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxSender:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(
        self, url: str, headers: dict[str, str], body: bytes, *, timeout_s: float, connect_timeout_s: float
    ) -> RawResponse:
        timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        try:
            # the transport may ignore timeouts (ASGITransport does): bound the call ourselves too
            async with asyncio.timeout(timeout_s + 1):
                resp = await self.client.post(url, headers=headers, content=body, timeout=timeout)
        except (TimeoutError, httpx.TimeoutException):
            raise ProviderTimeout(f"no answer within {timeout_s:g}s") from None
        except httpx.HTTPError as e:
            raise ConnectionFailed(f"{type(e).__name__}") from None
        return RawResponse(resp.status_code, resp.headers, resp.content, resp.reason_phrase)

    async def aclose(self) -> None:
        await self.client.aclose()
