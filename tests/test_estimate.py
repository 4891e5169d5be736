"""`routeyard estimate`: its model of what the worker will do, checked against real runs on the simulated farm.

The runs use deterministic job ids, so each one is a fixed sample of the load-balancing draw and the test
cannot flake; across random ids the example file's cost varies with sd ≈ 4% around its mean (see README)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ry_helpers import REPO, make_config

from producer.client import BatchOptions
from producer.embedded import Embedded
from producer.estimate import PRIOR_WEIGHT, BatchEstimate, Estimator, History, ledger_history
from producer.ingest import Line, read_lines
from shared.catalog import Catalog
from shared.config import RouteyardConfig, load_config
from shared.models import JobSpec, estimate_input_tokens, expected_input_tokens, text_tokens
from shared.settings import Settings
from shared.store import Store
from worker.farm import Farm
from worker.farm.tokens import count_prompt_tokens
from worker.runtime import farm_config_for

EXAMPLES = REPO / "examples" / "prompts.jsonl"
MIX_COPIES = 2


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Job ids from a counter: the per-job load-balancing seeds, and so the whole run, repeat exactly."""
    counter = itertools.count()
    monkeypatch.setattr("producer.client.new_job_id", lambda: f"job_{next(counter):026d}")


def _estimate(catalog: Catalog, path: Path, history: History | None = None) -> BatchEstimate:
    with path.open("rb") as f:
        return Estimator(catalog, history).estimate(read_lines(f))


async def _run(settings: Settings, store: Store, path: Path) -> Decimal:
    config = load_config()
    farm = Farm(farm_config_for(Catalog.from_config(config), latency_ms=0))
    async with Embedded(settings, config, farm=farm, store=store) as emb:
        report = await emb.producer.submit_file(path, BatchOptions())
        assert report.batch_id and report.accepted > 0 and not report.errors
        batch = await emb.producer.wait(report.batch_id, poll_s=0.02)
    assert batch["n_succeeded"] == report.accepted
    cost: Decimal = batch["cost_total"]
    return cost


def _variant(tmp_path: Path, tag: str) -> Path:
    """The example file with every prompt changed a little: other replies from the farm, same workload."""
    out = tmp_path / f"prompts-{tag}.jsonl"
    lines = []
    for raw in EXAMPLES.read_text().splitlines():
        obj: dict[str, Any] = json.loads(raw)
        obj["custom_id"] = f"{obj['custom_id']}-{tag}"
        if "prompt" in obj:
            obj["prompt"] += f"\n(ref {tag})"
        else:
            obj["messages"][-1]["content"] += f"\n(ref {tag})"
        lines.append(json.dumps(obj))
    out.write_text("\n".join(lines) + "\n")
    return out


def _error(estimate: Decimal, actual: Decimal) -> float:
    return float((estimate - actual) / actual)


def _mix(tmp_path: Path, tag: str, copies: int = MIX_COPIES) -> Path:
    """`copies` variants of the example file in one (prompts varied, so the farm's replies differ): a larger
    sample of the same workload, with less sampling noise than the file alone."""
    path = tmp_path / f"mix-{tag}.jsonl"
    path.write_text("".join(_variant(tmp_path, f"{tag}{i}").read_text() for i in range(copies)))
    return path


async def test_estimate_is_within_ten_percent_of_running_the_file(
    settings: Settings, sqlite_store: Store, fixed_ids: None
) -> None:
    catalog = Catalog.from_config(load_config())
    est = _estimate(catalog, EXAMPLES)  # before anything ran: priors only
    assert est.jobs == 240 and not est.errors and not est.no_route
    actual = await _run(settings, sqlite_store, EXAMPLES)
    print(f"prior estimate {est.expected_cost:.6f}, actual {actual:.6f}: {_error(est.expected_cost, actual):+.2%}")
    assert abs(_error(est.expected_cost, actual)) <= 0.10, (est.expected_cost, actual)
    assert est.worst_case_cost is not None and actual <= est.worst_case_cost


async def test_history_from_earlier_batches_estimates_the_next(
    settings: Settings, sqlite_store: Store, fixed_ids: None, tmp_path: Path
) -> None:
    """Calibrated on one mix, estimating another (same workload, other prompts and draws)."""
    catalog = Catalog.from_config(load_config())
    await _run(settings, sqlite_store, _mix(tmp_path, "calibration"))
    history = await sqlite_store.read(ledger_history(catalog))
    assert history.calls == 240 * MIX_COPIES
    target = _mix(tmp_path, "target")
    est = _estimate(catalog, target, history)
    assert f"ledger: {240 * MIX_COPIES}" in est.basis["output_tokens"]
    # the ledger taught it the farm's tokenizer: input tokens now within a few percent
    tokens = sum(
        count_prompt_tokens([m.text() for m in line.spec.chat_messages()], len(line.spec.chat_messages()))
        for line in read_lines(target.open("rb"))
        if isinstance(line, Line)
    )
    assert sum(r.input_tokens for r in est.rows) == pytest.approx(tokens, rel=0.05)
    actual = await _run(settings, sqlite_store, target)
    print(f"history estimate {est.expected_cost:.6f}, actual {actual:.6f}: {_error(est.expected_cost, actual):+.2%}")
    assert abs(_error(est.expected_cost, actual)) <= 0.10, (est.expected_cost, actual)


# ---------------------------------------------------------------------------------------------- the model
def _lines(*specs: dict[str, Any]) -> Iterator[Line]:
    return (Line(i, JobSpec.model_validate(s)) for i, s in enumerate(specs, 1))


def test_expected_cost_is_the_draws_expectation_over_the_first_candidate() -> None:
    data = make_config().model_dump(mode="json")
    data["models"]["small"]["endpoints"][1]["price"] = {"input": "2.00", "output": "4.00"}  # beta twice alpha's
    catalog = _catalog(data)
    est = Estimator(catalog).estimate(_lines({"prompt": "one two three", "max_tokens": 100}))
    spec = JobSpec(prompt="one two three")
    tokens_in, tokens_out = round(expected_input_tokens(spec)), 35  # basic class: expected_output_ratio 0.35
    odds_alpha = 1 / (1 + 1 / 4)  # inverse square of the price: beta costs twice as much for this job
    alpha = (Decimal(tokens_in) * 1 + Decimal(tokens_out) * 2) / 1_000_000
    expected = alpha * Decimal(odds_alpha) + 2 * alpha * Decimal(1 - odds_alpha)
    assert est.expected_cost == pytest.approx(expected, rel=Decimal("1e-9"))
    rows = {r.provider: r for r in est.rows}
    assert rows["alpha"].jobs == pytest.approx(0.8) and rows["beta"].jobs == pytest.approx(0.2)


def _catalog(data: dict[str, Any]) -> Catalog:
    return Catalog.from_config(RouteyardConfig.model_validate(data))


def test_history_shrinks_toward_the_prior() -> None:
    catalog = Catalog.from_config(make_config())
    history = History()
    spec = JobSpec(prompt="x")
    for _ in range(PRIOR_WEIGHT):  # as many calls as the prior weighs: halfway between the two
        history.add_call(
            class_name="basic",
            model="small",
            endpoint="alpha/small",
            spec=spec,
            max_tokens=200,
            row={"output_tokens": 150, "input_tokens": 2 * round(expected_input_tokens(spec)), "latency_ms": 500},
        )
    est = Estimator(catalog, history)
    # the model's own 20 calls at 0.75 weigh as much as the prior (the class has no other model with history);
    # another model of the class starts from what this one did, with no history of its own
    assert est.output_ratio("basic", "small") == pytest.approx(0.55)
    assert est.output_ratio("basic", "big") == pytest.approx(0.55)
    assert est.input_scale("small") == pytest.approx(1.5, rel=0.01) == est.input_scale("big")
    assert Estimator(catalog).output_ratio("basic", "small") == 0.35


def test_wall_time_is_bound_by_rate_limits_then_concurrency() -> None:
    data = make_config().model_dump(mode="json")
    data["providers"]["alpha"]["rpm"] = 60
    data["providers"]["beta"]["rpm"] = 60
    catalog = _catalog(data)
    jobs = [{"prompt": f"q{i}", "max_tokens": 100} for i in range(240)]
    est = Estimator(catalog, concurrency=1000).estimate(_lines(*jobs))
    # 120 jobs expected on each provider: a minute's burst of 60, then one a second
    assert est.wall.bottleneck.startswith("rate limits of") and est.wall.seconds == pytest.approx(60.0)
    est = Estimator(Catalog.from_config(make_config()), concurrency=4).estimate(_lines(*jobs))
    assert est.wall.bottleneck == "concurrency 4"
    latency = 0.5 + 35 / 60  # no history: first-token time plus expected output at 60 tokens/s
    assert est.wall.seconds == pytest.approx(240 * latency / 4)


def test_unpriced_jobs_no_routes_and_bad_lines_are_reported_not_priced_at_zero() -> None:
    data = make_config().model_dump(mode="json")
    data["policy"]["allow_unpriced"] = True
    catalog = _catalog(data)

    endpoints = {s: replace(e, price=None) if e.provider == "gamma" else e for s, e in catalog.endpoints.items()}
    by_model = {m: tuple(endpoints[e.slug] for e in eps) for m, eps in catalog.by_model.items()}
    catalog = Catalog(catalog.config, endpoints, by_model)
    est = Estimator(catalog).estimate(
        _lines(
            {"prompt": "a", "class": "bigonly"},
            {"prompt": "b"},
            {"prompt": "c", "provider": {"only": ["gamma"], "data_collection": "deny"}},
            {"prompt": "d", "model": "nope"},
        )
    )
    assert est.jobs == 2 and est.unpriced_jobs == 1.0
    assert est.worst_case_cost is None and est.worst_by_class["bigonly"] is None
    assert est.expected_cost > 0 and all(r.expected_cost == 0 for r in est.rows if r.provider == "gamma")
    assert [e.code for e in est.errors] == ["no_route", "unknown_model"]


def test_the_unbiased_token_count_reads_english_like_real_tokenizers() -> None:
    # cl100k counts 10 tokens here; the farm's stricter tokenizer 13; characters / 4 gives 11
    assert text_tokens("The quick brown fox jumps over the lazy dog.") == 10
    assert text_tokens("2024-06-22, 1234567") == 10  # digits in threes (2+1+1+3), punctuation one each (3)
    assert text_tokens("漢字") == 2


def test_config_priors_are_used_per_class() -> None:
    data = make_config().model_dump(mode="json")
    data["classes"]["basic"]["expected_output_ratio"] = 0.5
    est = Estimator(_catalog(data)).estimate(_lines({"prompt": "x", "max_tokens": 100}))
    assert sum(r.output_tokens for r in est.rows) == pytest.approx(50)


def test_the_upper_estimate_covers_the_farms_tokenizer_and_the_expected_count_tracks_it() -> None:
    """Worst cases rest on `estimate_input_tokens`: it must not fall below a strict tokenizer's count. The
    expected count is for real (cl100k-like) tokenizers, so it runs under the farm's, never wildly."""
    for line in read_lines(EXAMPLES.open("rb")):
        assert isinstance(line, Line)
        msgs = line.spec.chat_messages()
        farm = count_prompt_tokens([m.text() for m in msgs], len(msgs))
        assert estimate_input_tokens(line.spec) >= farm, line.spec.custom_id
        assert 0.75 <= expected_input_tokens(line.spec) / farm <= 1.05, line.spec.custom_id
