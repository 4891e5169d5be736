"""Provider adapters: each wire format against the simulated farm, and the error taxonomy against canned
answers (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.catalog import Catalog, Endpoint
from shared.config import ProviderConfig, load_config
from shared.errors import (
    AuthFailed,
    BadResponse,
    ConnectionFailed,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    ProviderTimeout,
    RateLimited,
    UpstreamError,
)
from shared.models import Message
from worker.farm import Farm, FarmConfig, ProviderBehaviour
from worker.providers import ADAPTERS, ChatRequest, Credential
from worker.providers.openai_compat import parse_duration
from worker.providers.transport import AiohttpSender, HttpxSender

SECRET = "sk-live-abcdefghijklmnopqrstuvwxyz0123456789"
CRED = Credential(secret=SECRET, ref="pooled:test")


def _request(text: str = "Summarise: the cat sat on the mat.", max_tokens: int = 64) -> ChatRequest:
    return ChatRequest(
        messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)],
        max_tokens=max_tokens,
        params={"temperature": 0.3, "stop": "END"},
        job_id="job_1",
        attempt_id="att_1",
    )


def _endpoint(wire: str, model: str = "m-1", ctx: int = 8000) -> Endpoint:
    return Endpoint(
        slug=f"p/{model}",
        model=model,
        provider="p",
        upstream_model=model,
        wire=wire,
        price=None,  # type: ignore[arg-type]
        context_length=ctx,
    )


def _adapter(wire: str, transport: httpx.AsyncBaseTransport, base: str, timeout_s: float = 5.0) -> Any:
    cfg = ProviderConfig(wire=wire, base_url=base, timeout_s=timeout_s)  # type: ignore[arg-type]
    return ADAPTERS[wire]("p", cfg, HttpxSender(httpx.AsyncClient(transport=transport)), base)


@pytest.mark.parametrize("wire", ["openai", "anthropic", "gemini"])
async def test_each_wire_against_the_farm(wire: str) -> None:
    farm = Farm(FarmConfig(providers={"p": ProviderBehaviour(wire=wire)}))  # type: ignore[arg-type]
    base = "http://farm/p" + ("/v1" if wire == "openai" else "")
    adapter = _adapter(wire, httpx.ASGITransport(app=farm), base)
    result = await adapter.complete(_endpoint(wire), _request(), CRED)
    [served] = farm.record.requests
    assert served.outcome == "served" and served.attempt_id == "att_1" and served.job_id == "job_1"
    assert (result.input_tokens, result.output_tokens) == (served.prompt_tokens, served.completion_tokens)
    body = result.body
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == result.output_tokens


async def test_the_system_prompt_counts_on_every_wire() -> None:
    """Anthropic and Gemini take the system prompt apart from the messages; it must still be sent."""
    counts = {}
    for wire in ("openai", "anthropic", "gemini"):
        farm = Farm(FarmConfig(providers={"p": ProviderBehaviour(wire=wire)}))  # type: ignore[arg-type]
        base = "http://farm/p" + ("/v1" if wire == "openai" else "")
        adapter = _adapter(wire, httpx.ASGITransport(app=farm), base)
        with_system = await adapter.complete(_endpoint(wire), _request(), CRED)
        counts[wire] = with_system.input_tokens
    assert len(set(counts.values())) == 1, counts


def _canned(status: int, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        content = raw if raw is not None else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers=headers or {})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("wire", "status", "body", "headers", "error"),
    [
        ("openai", 400, {"error": {"message": "bad", "code": None}}, {}, InvalidRequest),
        (
            "openai",
            400,
            {"error": {"message": "too long", "code": "context_length_exceeded"}},
            {},
            ContextLengthExceeded,
        ),
        ("openai", 401, {"error": {"message": f"Incorrect API key provided: {SECRET}"}}, {}, AuthFailed),
        ("openai", 404, {"error": {"message": "no such model"}}, {}, ModelNotFound),
        ("openai", 429, {"error": {"message": "slow down"}}, {"retry-after-ms": "1500"}, RateLimited),
        ("openai", 503, {"error": {"message": "overloaded"}}, {}, UpstreamError),
        (
            "anthropic",
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
            {},
            UpstreamError,
        ),
        (
            "anthropic",
            400,
            {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}},
            {},
            ContextLengthExceeded,
        ),
        (
            "gemini",
            429,
            {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}},
            {"retry-after": "3"},
            RateLimited,
        ),
    ],
)
async def test_errors_map_to_the_taxonomy(
    wire: str, status: int, body: Any, headers: dict[str, str], error: type
) -> None:
    adapter = _adapter(wire, _canned(status, body, headers), "http://x")
    with pytest.raises(error) as info:
        await adapter.complete(_endpoint(wire), _request(), CRED)
    assert info.value.status_code == status
    assert SECRET not in str(info.value)  # an echoed key is redacted
    if status == 429:
        assert info.value.retry_after in (1.5, 3.0)


async def test_unparseable_answers_are_bad_responses() -> None:
    adapter = _adapter("openai", _canned(200, raw=b"<html>gateway</html>"), "http://x")
    with pytest.raises(BadResponse):
        await adapter.complete(_endpoint("openai"), _request(), CRED)
    adapter = _adapter("openai", _canned(200, {"choices": []}), "http://x")
    with pytest.raises(BadResponse):
        await adapter.complete(_endpoint("openai"), _request(), CRED)


async def test_a_hung_provider_is_cut_at_the_timeout() -> None:
    farm = Farm(FarmConfig(providers={"p": ProviderBehaviour(p_hang=1.0, hang_s=30)}))
    adapter = _adapter("openai", httpx.ASGITransport(app=farm), "http://farm/p/v1", timeout_s=0.3)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderTimeout):
        await adapter.complete(_endpoint("openai"), _request(), CRED)
    assert asyncio.get_running_loop().time() - started < 2.0


async def test_connection_refused_is_a_connection_failure() -> None:
    cfg = ProviderConfig(base_url="http://127.0.0.1:9", timeout_s=2)
    adapter = ADAPTERS["openai"]("p", cfg, AiohttpSender(), "http://127.0.0.1:9/v1")
    with pytest.raises(ConnectionFailed):
        await adapter.complete(_endpoint("openai"), _request(), CRED)
    await adapter.sender.aclose()


async def test_the_network_sender_talks_to_a_farm_over_loopback_and_times_out() -> None:
    from ry_helpers import farm_in_thread

    farm = Farm(FarmConfig(providers={"p": ProviderBehaviour(), "slow": ProviderBehaviour(p_hang=1.0, hang_s=30)}))
    with farm_in_thread(farm) as url:
        ok = ADAPTERS["openai"]("p", ProviderConfig(base_url=url), AiohttpSender(), f"{url}/p/v1")
        result = await ok.complete(_endpoint("openai"), _request(), CRED)
        assert result.output_tokens > 0 and result.request_id
        slow = ADAPTERS["openai"]("slow", ProviderConfig(base_url=url, timeout_s=0.3), ok.sender, f"{url}/slow/v1")
        with pytest.raises(ProviderTimeout):
            await slow.complete(_endpoint("openai"), _request(), CRED)
        await ok.sender.aclose()


async def test_openai_rate_limit_headers_are_read() -> None:
    headers = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    body = {
        "id": "c",
        "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    adapter = _adapter("openai", _canned(200, body, headers), "http://x")
    result = await adapter.complete(_endpoint("openai"), _request(), CRED)
    rl = result.rate_limits
    assert rl is not None and rl.remaining_requests == 499 and rl.reset_tokens_s == 360.0
    assert parse_duration("1h2m3.5s") == 3723.5 and parse_duration("0.5") == 0.5 and parse_duration(None) is None


def test_catalog_prices_match_genai_prices_and_overrides() -> None:
    cat = Catalog.from_config(load_config())
    mini = cat.endpoint("openai/gpt-4o-mini")
    assert mini.price is not None and mini.price.source == "genai-prices"
    assert mini.cost(1_000_000, 0) == Decimal("0.15") and mini.cost(0, 1_000_000) == Decimal("0.6")
    deepinfra = cat.endpoint("deepinfra/llama-3.3-70b-instruct")
    assert deepinfra.price is not None and deepinfra.price.source == "config"
    assert deepinfra.cost(1_000_000, 1_000_000) == Decimal("0.63")
