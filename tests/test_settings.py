"""Settings come from routeyard's own environment variables only."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings


def test_home_is_not_read_from_the_shells_home(monkeypatch: pytest.MonkeyPatch) -> None:
    # regression: with populate_by_name, pydantic-settings also read a field from an environment variable
    # named like it, so `home` came from $HOME and the embedded database landed in the user's home directory
    monkeypatch.setenv("HOME", "/somewhere/else")
    monkeypatch.delenv("ROUTEYARD_HOME", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = Settings()
    assert s.home == Path(".routeyard")
    assert s.resolved_database_url() == "sqlite:///.routeyard/routeyard.db"


def test_routeyard_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTEYARD_HOME", "/srv/ry")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    s = Settings()
    assert s.home == Path("/srv/ry") and s.redis_url == "redis://cache:6379/2"
