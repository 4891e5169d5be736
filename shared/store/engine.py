"""Database engines: SQLite by default (one file, WAL, safe for several local processes), PostgreSQL when
`DATABASE_URL` says so. Synchronous SQLAlchemy Core, always run off the event loop (see `Store`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import shared.tables
import shared.tables_gateway
import shared.tables_keys
import shared.tables_webhooks  # noqa: F401  (registers every table on SQLModel.metadata)


def normalise_url(url: str) -> str:
    """Accept the URLs people paste (`postgres://`, `postgresql://`) and pick the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str, *, pool_size: int = 8) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def metadata() -> MetaData:
    """Every routeyard table (each table module registers its tables on import). A module that adds tables
    is imported at the top of this file, and its tables get a migration (`routeyard db revision`)."""
    return SQLModel.metadata


def create_schema(engine: Engine) -> None:
    """Bring the database to the current schema: migrations from whatever revision it is at (a new database
    is created from the models in one step and stamped at the head revision). See `shared.store.migrate`."""
    from shared.store.migrate import ensure_schema

    ensure_schema(engine)
