"""`routeyard doctor`: is this deployment able to run, and if not, what to fix.

Checks, each `ok`, `warn` (works, but look) or `fail` (will not work; the command exits 1):
- **config**: the TOML file parses and its references resolve;
- **redis**: `REDIS_URL` answers PING;
- **database**: `DATABASE_URL` connects and its schema is at the code's head revision;
- **providers**: a real provider's `base_url` answers HTTP at all (any status: reachability, not auth) within
  a short timeout; `sim://` providers are served by the farm in process, or by the one at
  `ROUTEYARD_SIM_URL`, which must answer;
- **keys**: every real provider's `key_env` is set (its value is never printed);
- **master key**: `ROUTEYARD_MASTER_KEY` is set and valid. Without it the key generated into
  `$ROUTEYARD_HOME/master.key` is used — fine on a laptop, a failure in production (a key file on one host
  cannot decrypt on another, and it sits beside the data it protects). Production is `--production`, or
  assumed when the database is PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from shared.config import RouteyardConfig, load_config
from shared.errors import ConfigError
from shared.settings import Settings

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


def check_config(path: Path | None) -> tuple[Check, RouteyardConfig | None]:
    try:
        conf = load_config(path)
    except ConfigError as e:
        return Check("config", "fail", str(e), "fix the config file (ROUTEYARD_CONFIG, ./routeyard.toml)"), None
    detail = f"{len(conf.providers)} providers, {len(conf.models)} models, {len(conf.classes)} classes"
    return Check("config", "ok", detail), conf


async def check_redis(url: str, timeout_s: float) -> Check:
    from redis.asyncio import Redis

    shown = _hide_password(url)
    client = Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        await asyncio.wait_for(client.ping(), timeout_s * 2)
    except Exception as e:
        return Check("redis", "fail", f"{shown} does not answer: {type(e).__name__}", "start Redis or set REDIS_URL")
    finally:
        await client.aclose()
    return Check("redis", "ok", f"{shown} answers")


def check_database(url: str) -> Check:
    from sqlalchemy import text

    from shared.store import migrate
    from shared.store.engine import make_engine

    shown = _hide_password(url)
    try:
        engine = make_engine(url)
    except Exception as e:
        return Check("database", "fail", f"{shown}: {e}", "set DATABASE_URL to a postgresql:// or sqlite:/// URL")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        rev, head = migrate.current(engine), migrate.head()
        empty = rev is None and not migrate.has_tables(engine)
    except Exception as e:
        return Check(
            "database", "fail", f"{shown}: cannot connect ({type(e).__name__})", "start it or fix DATABASE_URL"
        )
    finally:
        engine.dispose()
    if empty:
        return Check("database", "warn", f"{shown}: empty; the first routeyard command creates the schema")
    if rev != head:
        return Check(
            "database",
            "fail",
            f"{shown}: schema at {rev or 'nothing'}, code expects {head}",
            "run `routeyard db upgrade`",
        )
    return Check("database", "ok", f"{shown}: schema at head ({head})")


async def _reachable(client: httpx.AsyncClient, url: str) -> str | None:
    """None when `url` answers HTTP at all, else why not."""
    try:
        await client.get(url)
    except httpx.HTTPError as e:
        return type(e).__name__
    return None


async def check_providers(
    conf: RouteyardConfig, settings: Settings, env: Mapping[str, str], timeout_s: float
) -> list[Check]:
    from worker.runtime import sim_name

    out: list[Check] = []
    simulated = [n for n, p in conf.providers.items() if p.simulated]
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
        if simulated and settings.sim_url:
            why = await _reachable(client, settings.sim_url.rstrip("/") + "/_farm/stats")
            if why:
                detail = f"ROUTEYARD_SIM_URL {settings.sim_url} does not answer ({why})"
                fix = "start `routeyard simulate` there, or unset ROUTEYARD_SIM_URL to run the farm in process"
                out.append(Check("farm", "fail", detail, fix))
            else:
                out.append(Check("farm", "ok", f"{len(simulated)} simulated provider(s) at {settings.sim_url}"))
        elif simulated:
            names = ", ".join(sim_name(conf.providers[n].base_url) for n in simulated)
            out.append(Check("farm", "ok", f"{len(simulated)} simulated provider(s) served in process ({names})"))
        real = [(n, p) for n, p in conf.providers.items() if not p.simulated]
        results = await asyncio.gather(*(_reachable(client, p.base_url) for _, p in real))
    for (name, prov), why in zip(real, results, strict=True):
        if why is None:
            out.append(Check(f"provider {name}", "ok", f"{prov.base_url} answers"))
        else:
            out.append(
                Check(
                    f"provider {name}",
                    "fail",
                    f"{prov.base_url} unreachable ({why})",
                    "check the network, a proxy, or the provider's base_url",
                )
            )
        if prov.key_env is None:
            out.append(Check(f"key {name}", "warn", "no key_env: calls carry no key (fine for local servers)"))
        elif env.get(prov.key_env):
            out.append(Check(f"key {name}", "ok", f"{prov.key_env} is set"))
        else:
            out.append(
                Check(
                    f"key {name}",
                    "fail",
                    f"{prov.key_env} is not set: only BYOK keys can call {name}",
                    f"export {prov.key_env}=… on every worker host",
                )
            )
    return out


def check_master_key(settings: Settings, env: Mapping[str, str], production: bool) -> Check:
    from shared.crypto import SecretBox

    value = env.get("ROUTEYARD_MASTER_KEY")
    if value:
        try:
            SecretBox(value.split(","))
        except ConfigError as e:
            return Check("master key", "fail", str(e), "`routeyard secrets new-key` makes a valid one")
        return Check("master key", "ok", f"ROUTEYARD_MASTER_KEY set ({len(value.split(','))} key(s))")
    local = settings.home / "master.key"
    where = f"the local key file {local}" + ("" if local.exists() else " (generated on first use)")
    if production:
        return Check(
            "master key",
            "fail",
            f"ROUTEYARD_MASTER_KEY is not set; stored secrets would use {where}",
            "set ROUTEYARD_MASTER_KEY on every host (`routeyard secrets new-key`; see README, rotating)",
        )
    return Check("master key", "warn", f"ROUTEYARD_MASTER_KEY is not set: using {where} (a dev convenience)")


async def run_checks(
    settings: Settings,
    config_path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    production: bool | None = None,
    timeout_s: float = 3.0,
) -> list[Check]:
    env = os.environ if env is None else env
    db_url = settings.resolved_database_url()
    if production is None:
        production = db_url.startswith(("postgres://", "postgresql"))
    config_check, conf = check_config(config_path)
    checks = [config_check]
    redis_check, db_check = await asyncio.gather(
        check_redis(settings.redis_url, timeout_s), asyncio.to_thread(check_database, db_url)
    )
    checks += [redis_check, db_check]
    if conf is not None:
        checks += await check_providers(conf, settings, env, timeout_s)
    checks.append(check_master_key(settings, env, production))
    return checks


__all__ = ["Check", "run_checks"]
