"""`routeyard models`, `routeyard route` and `routeyard estimate` as a user runs them (in process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ry_helpers import REPO
from typer.testing import CliRunner, Result

from producer.cli import app
from shared.settings import get_settings

EXAMPLES = REPO / "examples" / "prompts.jsonl"
MYSTERY = """
[routing]
default_class = "x"
[policy]
allow_unpriced = true
[providers.mystery]
base_url = "sim://mystery"
data_collection = "allow"
[providers.known]
base_url = "sim://known"
zdr = true
region = "eu"
[models.enigma]
context_length = 1000
endpoints = [{ provider = "mystery" }, { provider = "known", price = { input = "1", output = "2" }, quantization = "fp8" }]
[classes.x]
models = ["enigma"]
"""


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test in its own ROUTEYARD_HOME, with no store unless it makes one."""
    monkeypatch.setenv("ROUTEYARD_HOME", str(tmp_path / "home"))
    for name in ("DATABASE_URL", "ROUTEYARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def _run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_models_lists_prices_their_source_and_data_policy(tmp_path: Path) -> None:
    res = _run("models")
    assert res.exit_code == 0
    assert "genai-prices" in res.output and "config" in res.output and "deepinfra" in res.output
    rows = json.loads(_run("models", "--json").output)
    deepinfra = next(r for r in rows if r["endpoint"] == "deepinfra/llama-3.1-8b-instruct")
    assert deepinfra["price_source"] == "config" and deepinfra["input_per_m"] == "0.03"
    assert deepinfra["quantization"] == "bf16" and deepinfra["zdr"] and not deepinfra["trains_on_prompts"]
    assert "simple" in deepinfra["classes"]
    together = next(r for r in rows if r["provider"] == "together")
    assert together["trains_on_prompts"]
    cfg = tmp_path / "mystery.toml"
    cfg.write_text(MYSTERY)
    [unknown] = [r for r in json.loads(_run("models", "--json", "-c", str(cfg)).output) if r["provider"] == "mystery"]
    assert unknown["input_per_m"] is None and unknown["price_source"] is None  # unknown, never $0
    assert "unknown" in _run("models", "-c", str(cfg)).output


def test_models_filters_by_provider_and_class() -> None:
    rows = json.loads(_run("models", "--json", "--provider", "groq", "--class", "simple").output)
    assert [r["endpoint"] for r in rows] == ["groq/llama-3.1-8b-instruct"]
    assert _run("models", "--class", "nope").exit_code == 2
    assert _run("models", "--provider", "nope").exit_code == 2


def test_route_explains_the_plan_with_costs_and_odds() -> None:
    res = _run("route", '{"prompt": "Classify: great product", "class": "simple", "provider": {"ignore": ["azure"]}}')
    assert res.exit_code == 0, res.output
    assert "plan (tried in this order" in res.output and "openai/gpt-4.1-nano" in res.output
    assert "azure/gpt-4.1-nano" in res.output and "provider.ignore" in res.output
    assert "worst" in res.output and "odds" in res.output
    assert "odds 100.0%" in res.output  # openai/gpt-4.1-nano is the only primary endpoint left


def test_route_says_why_per_endpoint_when_nothing_is_left() -> None:
    job = {
        "prompt": "x",
        "model": "llama-3.3-70b-instruct",
        "provider": {"max_price": {"prompt": 0.1}, "data_collection": "deny"},
    }
    res = _run("route", json.dumps(job))
    assert res.exit_code == 1
    assert "nothing can serve this job" in res.output
    for slug in ("groq", "cerebras", "deepinfra", "together"):
        assert f"{slug}/llama-3.3-70b-instruct" in res.output
    assert "above max_price" in res.output and "may train on prompts" in res.output


def test_route_a_file_line_by_line(tmp_path: Path) -> None:
    f = tmp_path / "jobs.jsonl"
    f.write_text(
        '{"custom_id": "ok", "prompt": "hi"}\n'
        '{"custom_id": "bad", "prompt": "hi", "provider": {"only": ["nope"]}}\n'
        "not json\n"
    )
    res = _run("route", "--file", str(f), "--brief", "--seed", "3")
    assert res.exit_code == 1
    assert "line 1 (ok): openai/gpt-4.1-mini" in res.output
    assert "unknown_provider" in res.output and "invalid_json" in res.output
    assert _run("route", "--file", str(EXAMPLES), "--brief").exit_code == 0
    assert _run("route").exit_code == 2


def test_estimate_reports_cost_by_class_model_provider_and_wall_time(home: Path) -> None:
    res = _run("estimate", str(EXAMPLES))
    assert res.exit_code == 0, res.output
    assert "expected cost $" in res.output and "worst case $" in res.output and "wall time" in res.output
    assert "claude-sonnet-4" in res.output and "complex (all)" in res.output
    assert not home.exists()  # no store was created to look for history
    data = json.loads(_run("estimate", str(EXAMPLES), "--json", "--concurrency", "8").output)
    assert data["jobs"] == 240 and data["basis"]["output_tokens"].startswith("prior")
    assert sum(r["jobs"] for r in data["rows"]) == pytest.approx(240)
    assert float(data["expected_cost"]) < float(data["worst_case_cost"])
    assert data["bottleneck"] == "concurrency 8" or data["bottleneck"].startswith("slowest call")


async def test_estimate_learns_from_the_configured_store(home: Path) -> None:
    from producer.embedded import Embedded
    from shared.catalog import Catalog
    from shared.config import load_config
    from shared.models import JobSpec
    from worker.farm import Farm
    from worker.runtime import farm_config_for

    config = load_config()
    farm = Farm(farm_config_for(Catalog.from_config(config), latency_ms=0))
    async with Embedded(get_settings(), config, farm=farm) as emb:  # the store at $ROUTEYARD_HOME
        report = await emb.producer.submit_specs([JobSpec(prompt=f"q{i}", class_="simple") for i in range(6)])
        assert report.batch_id
        await emb.producer.wait(report.batch_id, poll_s=0.02)
    data = json.loads(_run("estimate", str(EXAMPLES), "--json").output)
    assert data["basis"]["output_tokens"].startswith("ledger: 6 recent successful calls")
    assert json.loads(_run("estimate", str(EXAMPLES), "--json", "--no-history").output)["basis"][
        "output_tokens"
    ].startswith("prior")


def test_estimate_reports_bad_lines_and_fails_when_nothing_can_run(tmp_path: Path) -> None:
    res = _run("estimate", str(REPO / "examples" / "bad_lines.jsonl"))
    assert res.exit_code == 0 and "rejected" in res.output
    f = tmp_path / "none.jsonl"
    f.write_text('{"prompt": "x", "model": "nope"}\n')
    assert _run("estimate", str(f)).exit_code == 1
