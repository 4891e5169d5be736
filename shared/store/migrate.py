"""Schema migrations (Alembic), the way the store's schema changes once a database holds data.

Layout: `shared/migrations/` is the Alembic environment (`env.py` targets `SQLModel.metadata`, every table
module imported), `shared/migrations/versions/NNNN_*.py` the revisions, numbered in order. `0001` is the
schema as it was when migrations began; every later change to a table is a new revision.

How the store uses them (`Store.open(create=True)` → `ensure_schema`):
- a database already at the head revision: one query, nothing else (startup stays fast);
- a new, empty database: the tables are created from the models in one step and stamped at head — the
  Alembic recipe for fresh databases, and `tests/test_migrations.py` checks that this equals running every
  revision from empty;
- a database behind head: `upgrade head`, in one transaction (PostgreSQL runs DDL transactionally; an
  advisory lock keeps two starting processes from migrating at once);
- a database created before migrations existed (tables, no `alembic_version`): stamped at `0001`, then
  upgraded.

Adding a table or column: change the model, then `routeyard db revision -m "what changed"` (autogenerates a
revision against a database at head; review it: keep plain SQLAlchemy types, not routeyard's TypeDecorators,
so old revisions never change meaning when the code does), and commit it with the model change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from shared.store.engine import metadata

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
BASELINE = "0001"
"""The schema from before migrations existed."""
_LOCK_ID = 0x7279_6D69  # "rymi": the advisory lock held while migrating (PostgreSQL)


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def head() -> str:
    """The newest revision in the code."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if rev is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return rev


def current(engine: Engine) -> str | None:
    """The revision the database is at; None when it has never been migrated (or is empty)."""
    with engine.connect() as conn:
        return _current(conn)


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})


def has_tables(engine: Engine) -> bool:
    """Whether any routeyard table exists (an empty database has none)."""
    with engine.connect() as conn:
        return _has_tables(conn)


def _has_tables(conn: Connection) -> bool:
    names = set(inspect(conn).get_table_names())
    return any(t in names for t in metadata().tables)


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """SQLite runs DDL outside the driver's implicit transactions: processes starting on one new file take
    turns through a lock file beside it instead. (PostgreSQL uses an advisory lock in the transaction.)"""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.migrate-lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_schema(engine: Engine) -> str:
    """Bring the database to head (see the module docstring); returns what was done."""
    with engine.connect() as conn:
        if _current(conn) == head():
            return "at head"
    with _sqlite_file_lock(engine):
        return _ensure(engine)


def _ensure(engine: Engine) -> str:
    with engine.begin() as conn:
        _lock(conn)
        rev = _current(conn)
        if rev == head():
            return "at head"
        if rev is None and not _has_tables(conn):
            metadata().create_all(conn)
            command.stamp(alembic_config(conn), head())
            return "created"
        if rev is None:
            command.stamp(alembic_config(conn), BASELINE)
        command.upgrade(alembic_config(conn), "head")
        return "upgraded"


def upgrade(engine: Engine, target: str = "head") -> None:
    """Run the revisions up to `target` (an empty database gets every revision, from the first)."""
    with _sqlite_file_lock(engine), engine.begin() as conn:
        _lock(conn)
        if _current(conn) is None and _has_tables(conn):
            command.stamp(alembic_config(conn), BASELINE)
        command.upgrade(alembic_config(conn), target)


def revision(engine: Engine, message: str, *, autogenerate: bool = True) -> str:
    """Write a new revision file (autogenerated from the difference between the models and a database at
    head); returns its path."""
    current_head = head()
    rev_id = f"{int(current_head) + 1:04d}" if current_head.isdigit() else None  # numbered, in order
    with engine.begin() as conn:
        script = command.revision(alembic_config(conn), message=message, autogenerate=autogenerate, rev_id=rev_id)
    head.cache_clear()
    if script is None or isinstance(script, list):
        raise RuntimeError("alembic wrote no single revision")
    return str(script.path)


__all__ = ["BASELINE", "alembic_config", "current", "ensure_schema", "has_tables", "head", "revision", "upgrade"]
