"""Shared fixtures. Backends:

- `redis` is parametrised over fakeredis and the real Redis on 127.0.0.1:6379 (each test gets its own key
  prefix on the real server and cleans it up);
- `store` is parametrised over SQLite (a temp file) and PostgreSQL (a database created for the session on
  127.0.0.1:5432, tables emptied between tests).

Where a real service is down, its tests skip — unless ROUTEYARD_REQUIRE_SERVICES=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from ry_helpers import PG_ADMIN_URL, REDIS_URL, pg_available, redis_available

from shared.settings import Settings
from shared.store import Store
from shared.store.engine import create_schema, make_engine
from shared.tables import SQLModel

REQUIRE = os.environ.get("ROUTEYARD_REQUIRE_SERVICES") == "1"


def _need(available: bool, what: str) -> None:
    if available:
        return
    if REQUIRE:
        pytest.fail(f"{what} is not answering and ROUTEYARD_REQUIRE_SERVICES=1")
    pytest.skip(f"{what} is not answering")


# ---------------------------------------------------------------------------------------------- redis
@pytest.fixture
def key_prefix() -> str:
    return f"rytest:{uuid.uuid4().hex[:10]}:"


async def _real_redis(prefix: str) -> AsyncIterator[ArqRedis]:
    _need(redis_available(), "Redis on 127.0.0.1:6379")
    redis = ArqRedis.from_url(REDIS_URL)
    try:
        yield redis
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i : i + 500])
        await redis.aclose()


@pytest.fixture
async def real_redis(key_prefix: str) -> AsyncIterator[ArqRedis]:
    async for r in _real_redis(key_prefix):
        yield r


@pytest.fixture
async def fake_redis() -> AsyncIterator[ArqRedis]:
    from producer.embedded import embedded_redis

    redis = embedded_redis()
    yield redis
    await redis.aclose()


@pytest.fixture(params=["fake", "real"])
async def redis(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[ArqRedis]:
    if request.param == "real":
        async for r in _real_redis(key_prefix):
            yield r
    else:
        from producer.embedded import embedded_redis

        r = embedded_redis()
        yield r
        await r.aclose()


# ---------------------------------------------------------------------------------------------- stores
@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database for this test session; dropped at the end."""
    _need(pg_available(), "PostgreSQL on 127.0.0.1:5432")
    import psycopg

    name = f"routeyard_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        conn.exec_driver_sql(f"TRUNCATE {names} CASCADE")
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'routeyard.db'}"


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url = request.getfixturevalue("pg_database")
    _truncate(url)
    yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'routeyard.db'}"
    else:
        url = request.getfixturevalue("pg_database")
        _truncate(url)
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store.open(db_url)
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    s = Store.open(sqlite_url)
    yield s
    await s.close()


@pytest.fixture
def settings(tmp_path: Path, key_prefix: str) -> Settings:
    return Settings(
        ROUTEYARD_HOME=tmp_path / "home",
        ROUTEYARD_REDIS_PREFIX=key_prefix,
        REDIS_URL=REDIS_URL,
    )
