"""Process settings from the environment (12-factor): where the store, Redis and the config file are.

Everything about providers, models and classes lives in the TOML config (`shared.config`); this module only
says where things are, so one config file can run against many deployments.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    # no populate_by_name: with it, a field may also be read from an environment variable named like the field,
    # and `home` would come from $HOME
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    home: Path = Field(default=Path(".routeyard"), alias="ROUTEYARD_HOME")
    """Local state for the embedded defaults: the SQLite file, logs."""

    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    """SQLAlchemy URL; `postgresql://…` selects PostgreSQL. Unset: SQLite at `$ROUTEYARD_HOME/routeyard.db`."""

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", alias="REDIS_URL")

    redis_prefix: str = Field(default="ry:", alias="ROUTEYARD_REDIS_PREFIX")
    """Prefix of every routeyard key in Redis, so several deployments (or test runs) can share one server."""

    config_path: Path | None = Field(default=None, alias="ROUTEYARD_CONFIG")

    sim_url: str | None = Field(default=None, alias="ROUTEYARD_SIM_URL")
    """Where `sim://` providers live: unset runs the simulated farm in process; a URL (e.g. a
    `routeyard simulate` server) sends them over HTTP."""

    farm_config_path: Path | None = Field(default=None, alias="ROUTEYARD_FARM_CONFIG")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'routeyard.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
