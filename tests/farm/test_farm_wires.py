"""Each wire format's success and error shapes, as clients of the real APIs expect them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from farm_helpers import KEY, Connect, FakeClock, FarmClient, MakeFarm

from worker.farm import Farm, ProviderBehaviour
from worker.farm.behaviour import Wire
from worker.farm.tokens import count_prompt_tokens, count_tokens

WIRES: list[Wire] = ["openai", "anthropic", "gemini"]
PROVIDER_OF = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}


async def call(fc: FarmClient, wire: str, **kwargs: Any) -> httpx.Response:
    method = getattr(fc, wire)
    response: httpx.Response = await method(PROVIDER_OF[wire], **kwargs)
    return response


def error_of(wire: str, response: httpx.Response) -> str:
    """The error's machine-readable kind in the wire's own shape (and check that shape)."""
    body = response.json()
    if wire == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}
        return str(body["error"]["code"] or body["error"]["type"])
    if wire == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        return str(body["error"]["type"])
    assert body["error"]["code"] == response.status_code
    return str(body["error"]["status"])


async def test_openai_success_shape(farm: Farm, connect: Connect, clock: FakeClock) -> None:
    async with connect(farm) as fc:
        r = await fc.openai(prompt="Hello there", max_tokens=64)
    assert r.status_code == 200
    body = r.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["created"] == int(clock.now)
    assert body["model"] == "gpt-4o-mini"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == count_prompt_tokens(["Hello there"], 1)
    assert usage["completion_tokens"] == count_tokens(choice["message"]["content"])
    assert 1 <= usage["completion_tokens"] < 64
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert r.headers["x-request-id"].startswith("req_")
    assert "x-ratelimit-limit-requests" not in r.headers  # no limits configured, no limit headers


async def test_openai_content_parts_and_max_completion_tokens(farm: Farm, connect: Connect) -> None:
    async with connect(farm) as fc:
        plain = await fc.openai(prompt="Hello there", max_tokens=None, max_completion_tokens=64)
        parts = await fc.http.post(
            "/openai/v1/chat/completions",
            json={
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
                "max_tokens": 5000,  # max_completion_tokens wins over it
                "max_completion_tokens": 64,
            },
            headers={"authorization": f"Bearer {KEY}"},
        )
    assert plain.json()["usage"] == parts.json()["usage"]
    assert plain.json()["choices"] == parts.json()["choices"]


async def test_openai_without_max_tokens_caps_at_1024(farm: Farm, connect: Connect) -> None:
    async with connect(farm) as fc:
        answers = [await fc.openai(prompt=f"question {i}", max_tokens=None) for i in range(40)]
    completions = [a.json()["usage"]["completion_tokens"] for a in answers]
    assert max(completions) <= 1024
    assert sum(completions) / len(completions) > 200  # drawn against 1024, not some small default


@pytest.mark.parametrize("wire", WIRES)
async def test_max_tokens_cap_gives_length_finish(farm: Farm, connect: Connect, wire: Wire) -> None:
    async with connect(farm) as fc:
        r = await call(fc, wire, max_tokens=1)
    body = r.json()
    finish = {
        "openai": lambda: body["choices"][0]["finish_reason"],
        "anthropic": lambda: body["stop_reason"],
        "gemini": lambda: body["candidates"][0]["finishReason"],
    }[wire]()
    assert finish == {"openai": "length", "anthropic": "max_tokens", "gemini": "MAX_TOKENS"}[wire]


async def test_openai_models_list(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(deepinfra=ProviderBehaviour(models=["meta-llama/Llama-3.3-70B", "qwen-2.5"]))
    async with connect(farm) as fc:
        r = await fc.http.get("/deepinfra/v1/models", headers={"authorization": f"Bearer {KEY}"})
        unauthenticated = await fc.http.get("/deepinfra/v1/models")
    assert r.status_code == 200
    assert r.json()["object"] == "list"
    assert [m["id"] for m in r.json()["data"]] == ["meta-llama/Llama-3.3-70B", "qwen-2.5"]
    assert all(m["object"] == "model" and m["owned_by"] == "deepinfra" for m in r.json()["data"])
    assert unauthenticated.status_code == 401


async def test_anthropic_success_shape(farm: Farm, connect: Connect) -> None:
    async with connect(farm) as fc:
        r = await fc.anthropic(prompt="Hello there", system="Be brief.")
        blocks = await fc.anthropic(prompt="Hello there", system=[{"type": "text", "text": "Be brief."}])
    assert r.status_code == 200
    body = r.json()
    assert body["id"].startswith("msg_")
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "claude-sonnet-4")
    (block,) = body["content"]
    assert block["type"] == "text"
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert body["usage"] == {
        "input_tokens": count_prompt_tokens(["Be brief.", "Hello there"], 2),
        "output_tokens": count_tokens(block["text"]),
    }
    assert r.headers["request-id"].startswith("req_")
    assert blocks.json()["usage"] == body["usage"] and blocks.json()["content"] == body["content"]


async def test_anthropic_requires_max_tokens_and_version(farm: Farm, connect: Connect) -> None:
    async with connect(farm) as fc:
        no_max = await fc.anthropic(max_tokens=None)
        no_version = await fc.http.post(
            "/anthropic/v1/messages",
            json={"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": KEY},
        )
        system_role = await fc.anthropic(messages=[{"role": "system", "content": "no"}])
    for r in (no_max, no_version, system_role):
        assert r.status_code == 400
        assert error_of("anthropic", r) == "invalid_request_error"
    assert "max_tokens" in no_max.json()["error"]["message"]


async def test_gemini_success_shape(farm: Farm, connect: Connect) -> None:
    async with connect(farm) as fc:
        r = await fc.gemini(prompt="Hello there", systemInstruction={"parts": [{"text": "Be brief."}]})
        by_query = await fc.http.post(
            f"/google/v1beta/models/gemini-2.0-flash:generateContent?key={KEY}",
            json={
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "contents": [{"role": "user", "parts": [{"text": "Hello there"}]}],
                "generationConfig": {"maxOutputTokens": 64, "temperature": 0.2},
            },
        )
    assert r.status_code == 200
    body = r.json()
    (candidate,) = body["candidates"]
    assert candidate["content"]["role"] == "model" and candidate["index"] == 0
    assert candidate["finishReason"] == "STOP"
    text = candidate["content"]["parts"][0]["text"]
    usage = body["usageMetadata"]
    assert usage["promptTokenCount"] == count_prompt_tokens(["Be brief.", "Hello there"], 2)
    assert usage["candidatesTokenCount"] == count_tokens(text)
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert body["modelVersion"] == "gemini-2.0-flash" and body["responseId"]
    assert by_query.status_code == 200 and by_query.json()["usageMetadata"] == usage


async def test_same_conversation_same_usage_and_text_on_every_wire(farm: Farm, connect: Connect) -> None:
    async with connect(farm) as fc:
        o = await fc.openai(
            model="m",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name a colour."},
            ],
        )
        a = await fc.anthropic(model="m", system="Be brief.", prompt="Name a colour.")
        g = await fc.gemini(model="m", prompt="Name a colour.", systemInstruction={"parts": [{"text": "Be brief."}]})
    assert o.json()["usage"]["prompt_tokens"] == a.json()["usage"]["input_tokens"]
    assert a.json()["usage"]["input_tokens"] == g.json()["usageMetadata"]["promptTokenCount"]
    texts = {
        o.json()["choices"][0]["message"]["content"],
        a.json()["content"][0]["text"],
        g.json()["candidates"][0]["content"]["parts"][0]["text"],
    }
    assert len(texts) == 1


@pytest.mark.parametrize("wire", WIRES)
async def test_malformed_json_is_400_in_the_wire_shape(farm: Farm, connect: Connect, wire: Wire) -> None:
    paths = {
        "openai": "/openai/v1/chat/completions",
        "anthropic": "/anthropic/v1/messages",
        "gemini": "/google/v1beta/models/g:generateContent",
    }
    headers = {"authorization": f"Bearer {KEY}", "x-api-key": KEY, "x-goog-api-key": KEY}
    headers["anthropic-version"] = "2023-06-01"
    async with connect(farm) as fc:
        r = await fc.http.post(paths[wire], content=b'{"model": "x", ', headers=headers)
        not_object = await fc.http.post(paths[wire], content=b"[1, 2]", headers=headers)
    expected = {
        "openai": "invalid_request_error",
        "anthropic": "invalid_request_error",
        "gemini": "INVALID_ARGUMENT",
    }
    for response in (r, not_object):
        assert response.status_code == 400
        assert error_of(wire, response) == expected[wire]


@pytest.mark.parametrize("wire", WIRES)
async def test_unknown_model_is_404(make_farm: MakeFarm, connect: Connect, wire: Wire) -> None:
    farm = make_farm(**{PROVIDER_OF[wire]: ProviderBehaviour(wire=wire, models=["known-model"])})
    async with connect(farm) as fc:
        known = await call(fc, wire, model="known-model")
        unknown = await call(fc, wire, model="other-model")
    assert known.status_code == 200
    assert unknown.status_code == 404
    assert error_of(wire, unknown) == {"openai": "model_not_found", "anthropic": "not_found_error"}.get(
        wire, "NOT_FOUND"
    )


@pytest.mark.parametrize("wire", WIRES)
async def test_context_length_exceeded_is_400(make_farm: MakeFarm, connect: Connect, wire: Wire) -> None:
    behaviour = ProviderBehaviour(wire=wire, context_length={"*": 100_000, "small-model": 100})
    farm = make_farm(**{PROVIDER_OF[wire]: behaviour})
    async with connect(farm) as fc:
        fits = await call(fc, wire, model="small-model", max_tokens=50)
        too_long = await call(fc, wire, model="small-model", max_tokens=200)
        big_default = await call(fc, wire, model="large-model", max_tokens=200)
    assert fits.status_code == 200 and big_default.status_code == 200
    assert too_long.status_code == 400
    kind = error_of(wire, too_long)
    if wire == "openai":
        assert kind == "context_length_exceeded"
    elif wire == "anthropic":
        assert kind == "invalid_request_error"
        assert too_long.json()["error"]["message"].startswith("prompt is too long")
    else:
        assert kind == "INVALID_ARGUMENT"


@pytest.mark.parametrize("wire", WIRES)
async def test_auth(make_farm: MakeFarm, connect: Connect, wire: Wire) -> None:
    open_farm = make_farm()
    locked = make_farm(**{PROVIDER_OF[wire]: ProviderBehaviour(wire=wire, api_keys=["good"])})
    async with connect(open_farm) as fc:
        anyone = await call(fc, wire, key="whatever")
        missing = await call(fc, wire, key=None)
    async with connect(locked) as fc:
        good = await call(fc, wire, key="good")
        bad = await call(fc, wire, key="bad")
    assert anyone.status_code == 200 and good.status_code == 200
    for r in (missing, bad):
        assert r.status_code == 401
        expected = {
            "openai": "invalid_api_key",
            "anthropic": "authentication_error",
            "gemini": "UNAUTHENTICATED",
        }
        assert error_of(wire, r) == expected[wire]


@pytest.mark.parametrize("wire", WIRES)
async def test_down_answers_503_or_529_at_once(make_farm: MakeFarm, connect: Connect, wire: Wire) -> None:
    farm = make_farm(**{PROVIDER_OF[wire]: ProviderBehaviour(wire=wire, down=True, latency_ms=10_000)})
    async with connect(farm) as fc:
        r = await call(fc, wire, key=None)  # down comes before auth, and without the 10 s latency
    assert r.status_code == (529 if wire == "anthropic" else 503)
    assert error_of(wire, r) == {"openai": "server_error", "anthropic": "overloaded_error"}.get(wire, "UNAVAILABLE")


async def test_other_wire_paths_and_unknown_paths_are_404(farm: Farm, connect: Connect) -> None:
    async with connect(farm) as fc:
        anthropic_on_openai = await fc.anthropic(provider="openai")
        openai_on_google = await fc.openai(provider="google")
        no_provider = await fc.openai(provider="nobody")
        no_endpoint = await fc.http.get("/openai/v2/whatever")
        root = await fc.http.get("/")
    assert anthropic_on_openai.status_code == 404 and error_of("openai", anthropic_on_openai) == "unknown_url"
    assert openai_on_google.status_code == 404 and error_of("gemini", openai_on_google) == "NOT_FOUND"
    for r in (no_provider, no_endpoint, root):
        assert r.status_code == 404 and "error" in r.json()


async def test_streaming_is_refused_explicitly(farm: Farm, connect: Connect) -> None:
    async with connect(farm) as fc:
        r = await fc.openai(stream=True)
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"
