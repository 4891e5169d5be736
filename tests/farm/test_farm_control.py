"""The farm's record and control surface: accounting that matches what clients saw, runtime changes."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pydantic
import pytest
from farm_helpers import KEY, Connect, MakeFarm

import worker.farm
from worker.farm import Farm, FarmConfig, ProviderBehaviour, default_farm_config


async def test_record_matches_what_clients_received(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(openai=ProviderBehaviour(p_500=0.2, p_429=0.1), anthropic=ProviderBehaviour(wire="anthropic"))
    billed = {name: Counter[str]() for name in ("openai", "anthropic")}  # what clients were told
    async with connect(farm) as fc:
        for i in range(150):
            headers = {"x-routeyard-job-id": f"job-{i % 3}", "x-routeyard-attempt-id": f"att-{i}"}
            r = await fc.openai(prompt=f"question {i}", headers=headers)
            if r.status_code == 200:
                usage = r.json()["usage"]
                billed["openai"].update(served=1, prompt=usage["prompt_tokens"], completion=usage["completion_tokens"])
            r = await fc.anthropic(prompt=f"question {i}", headers=headers)
            usage = r.json()["usage"]
            billed["anthropic"].update(served=1, prompt=usage["input_tokens"], completion=usage["output_tokens"])
    for name, told in billed.items():
        served, prompt, completion = told["served"], told["prompt"], told["completion"]
        stats = farm.record.stats[name]
        assert (stats.served, stats.prompt_tokens, stats.completion_tokens) == (served, prompt, completion)
        assert stats.requests == 150
        log = farm.record.find(provider=name)
        assert sum(e.prompt_tokens for e in log) == prompt  # errors carry no tokens
        assert sum(e.completion_tokens for e in log) == completion
    assert farm.record.stats["openai"].served < 150 and set(farm.record.stats["openai"].errors) == {429, 500}
    job = farm.record.find(job_id="job-1", provider="openai")
    assert len(job) == 50 and {e.attempt_id for e in job} == {f"att-{i}" for i in range(1, 150, 3)}
    entry = job[0]
    assert entry.api_key_hash == hashlib.sha256(KEY.encode()).hexdigest()[:12]
    assert KEY not in repr(farm.record.requests)
    assert entry.model == "gpt-4o-mini" and entry.wire == "openai"


async def test_without_request_log_aggregates_are_kept(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(record_requests=False)
    async with connect(farm) as fc:
        for _ in range(5):
            await fc.openai()
    assert farm.record.requests == []
    assert farm.record.stats["openai"].served == 5


async def test_http_stats_requests_and_reset(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(openai=ProviderBehaviour(p_500=1.0), google=ProviderBehaviour(wire="gemini"))
    async with connect(farm) as fc:
        await fc.openai(headers={"x-routeyard-job-id": "j"})
        g = await fc.gemini(headers={"x-routeyard-job-id": "j"})
        stats = (await fc.http.get("/_farm/stats")).json()
        assert stats["openai"]["errors"] == {"500": 1} and stats["openai"]["served"] == 0
        usage = g.json()["usageMetadata"]
        assert stats["google"] == {
            "requests": 1,
            "served": 1,
            "hung": 0,
            "errors": {},
            "prompt_tokens": usage["promptTokenCount"],
            "completion_tokens": usage["candidatesTokenCount"],
        }
        log = (await fc.http.get("/_farm/requests", params={"job_id": "j", "provider": "google"})).json()
        assert [(e["provider"], e["outcome"], e["status_code"]) for e in log] == [("google", "served", 200)]
        assert len((await fc.http.get("/_farm/requests", params={"job_id": "j"})).json()) == 2
        assert (await fc.http.post("/_farm/reset")).status_code == 200
        assert (await fc.http.get("/_farm/stats")).json() == {}
        assert (await fc.http.get("/_farm/requests")).json() == []
        assert (await fc.http.get("/_farm/nothing")).status_code == 404


async def test_patch_provider_at_runtime(farm: Farm, connect: Connect) -> None:
    async with connect(farm) as fc:
        assert (await fc.openai()).status_code == 200
        patched = await fc.http.patch("/_farm/providers/openai", json={"down": True})
        assert patched.status_code == 200 and patched.json()["down"] is True
        assert (await fc.openai()).status_code == 503
        assert (await fc.http.get("/_farm/providers/openai")).json()["down"] is True
        await fc.http.patch("/_farm/providers/openai", json={"down": False, "p_500": 1.0})
        assert (await fc.openai()).status_code == 500

        invalid = await fc.http.patch("/_farm/providers/openai", json={"p_500": 0.8, "p_429": 0.8})
        assert invalid.status_code == 422
        typo = await fc.http.patch("/_farm/providers/openai", json={"p500": 0.1})
        assert typo.status_code == 422
        assert (await fc.http.patch("/_farm/providers/nobody", json={})).status_code == 404
        assert (await fc.http.patch("/_farm/providers/openai", content=b"{")).status_code == 400
    assert farm.behaviours["openai"].p_500 == 1.0  # the failed patches changed nothing


def test_set_behaviour_in_process(farm: Farm) -> None:
    updated = farm.set_behaviour("openai", p_500=0.2, rpm=100)
    assert (updated.p_500, updated.rpm) == (0.2, 100)
    assert farm.behaviours["openai"] is updated
    with pytest.raises(pydantic.ValidationError):
        farm.set_behaviour("openai", p_hang=2.0)
    with pytest.raises(KeyError):
        farm.set_behaviour("nobody", down=True)


def test_default_config() -> None:
    config = default_farm_config()
    wires = {name: b.wire for name, b in config.providers.items()}
    assert wires == {
        "openai": "openai",
        "anthropic": "anthropic",
        "google": "gemini",
        "deepinfra": "openai",
        "together": "openai",
        "groq": "openai",
        "fireworks": "openai",
        "azure": "openai",
        "bedrock": "openai",
    }
    for b in config.providers.values():
        assert (b.latency_ms, b.jitter_ms, b.models) == (50.0, 20.0, ["*"])
        assert (b.rpm, b.tpm, b.api_keys, b.down) == (None, None, None, False)
        assert b.p_429 == b.p_500 == b.p_503 == b.p_hang == 0.0


def test_config_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "farm.toml"
    path.write_text(
        """
seed = 42
record_requests = false

[providers.flaky]
wire = "anthropic"
models = ["claude-sonnet-4"]
p_503 = 0.1

[providers.flaky.context_length]
"claude-sonnet-4" = 200000

[providers.slow]
latency_ms = 800
rpm = 60
api_keys = ["sk-1"]
"""
    )
    config = FarmConfig.from_toml(path)
    assert config.seed == 42 and config.record_requests is False
    assert config.providers["flaky"].wire == "anthropic" and config.providers["flaky"].p_503 == 0.1
    assert config.providers["flaky"].context_for("claude-sonnet-4") == 200_000
    assert config.providers["flaky"].context_for("other") == 128_000
    assert config.providers["slow"].rpm == 60 and config.providers["slow"].api_keys == ["sk-1"]

    path.write_text("[providers.bad]\np500 = 0.1\n")
    with pytest.raises(pydantic.ValidationError):
        FarmConfig.from_toml(path)


def test_provider_names_must_be_path_safe() -> None:
    with pytest.raises(pydantic.ValidationError):
        FarmConfig(providers={"_farm": ProviderBehaviour()})
    with pytest.raises(pydantic.ValidationError):
        FarmConfig(providers={"a/b": ProviderBehaviour()})


async def test_lifespan_is_acknowledged(farm: Farm) -> None:
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    outbox: list[dict[str, str]] = []

    async def receive() -> dict[str, str]:
        return inbox.pop(0)

    async def send(message: dict[str, str]) -> None:
        outbox.append(message)

    await farm({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    assert [m["type"] for m in outbox] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_public_surface() -> None:
    assert sorted(worker.farm.__all__) == [
        "Farm",
        "FarmConfig",
        "FarmRecord",
        "ProviderBehaviour",
        "RequestRecord",
        "default_farm_config",
        "serve",
    ]
