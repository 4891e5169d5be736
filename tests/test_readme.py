"""The README's two commands are the contract with a fresh clone; CI must run the second one verbatim."""

from __future__ import annotations

import re

from ry_helpers import REPO


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)][:2]


def test_readme_opens_with_the_two_commands() -> None:
    head = (REPO / "README.md").read_text().split("---", 1)[0]
    run_cmd, test_cmd = _commands()
    assert run_cmd in head and test_cmd in head
    assert "routeyard run examples/prompts.jsonl" in run_cmd
    assert "pytest" in test_cmd


def test_ci_runs_the_readme_test_command() -> None:
    _, test_cmd = _commands()
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd in ci
    assert "ROUTEYARD_REQUIRE_SERVICES=1" in ci
    assert "redis-server --daemonize yes" in ci and "pg_ctlcluster" in ci
