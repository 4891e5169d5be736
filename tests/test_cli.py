"""The CLI as a user runs it: `routeyard run` on the examples (the README's main command), line errors,
`--strict`, and the batch commands against the store it leaves behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ry_helpers import REPO


def _routeyard(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, "ROUTEYARD_HOME": str(cwd / ".routeyard"), **(env or {})}
    full_env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_processes_the_example_workload(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    proc = _routeyard("run", str(REPO / "examples" / "prompts.jsonl"), "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 240 and all(x["response"]["status_code"] == 200 for x in lines)
    assert {x["custom_id"] for x in lines} == {
        json.loads(x)["custom_id"] for x in (REPO / "examples" / "prompts.jsonl").read_text().splitlines()
    }
    assert "240 succeeded" in proc.stdout and "wall time" in proc.stdout and "total" in proc.stdout
    batch_id = proc.stdout.split("batch ")[1].split(":")[0].strip()
    status = _routeyard("status", batch_id, "--json", cwd=tmp_path)
    assert json.loads(status.stdout)["batch"]["n_succeeded"] == 240
    res = _routeyard("results", batch_id, "--state", "succeeded", cwd=tmp_path)
    assert len(res.stdout.splitlines()) == 240


def test_bad_lines_are_reported_and_the_rest_run(tmp_path: Path) -> None:
    errors = tmp_path / "errors.jsonl"
    proc = _routeyard(
        "run",
        str(REPO / "examples" / "bad_lines.jsonl"),
        "-o",
        str(tmp_path / "r.jsonl"),
        "--errors",
        str(errors),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    rejected = {json.loads(x)["line"]: json.loads(x)["code"] for x in errors.read_text().splitlines()}
    assert rejected == {3: "invalid_json", 6: "invalid_request", 8: "unknown_class", 11: "duplicate_custom_id"}
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 8


def test_strict_rejects_the_whole_file(tmp_path: Path) -> None:
    proc = _routeyard("run", str(REPO / "examples" / "bad_lines.jsonl"), "--strict", cwd=tmp_path)
    assert proc.returncode == 1
    assert "whole file was rejected" in proc.stderr
    assert not (tmp_path / "results.jsonl").exists()


def test_invalid_utf8_line_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_bytes(b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n')
    proc = _routeyard("run", str(f), "-o", str(tmp_path / "r.jsonl"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "invalid_utf8" in proc.stderr and "1 jobs accepted, 1 rejected" in proc.stdout


def test_a_broken_config_is_explained(tmp_path: Path) -> None:
    cfg = tmp_path / "routeyard.toml"
    cfg.write_text('[classes.x]\nmodels = ["nope"]\n[providers]\n[models]\n')
    proc = _routeyard("run", str(REPO / "examples" / "bad_lines.jsonl"), "-c", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2
    assert "model 'nope' is not in [models]" in proc.stderr
