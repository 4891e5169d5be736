"""Alembic environment for routeyard's store: the target is `SQLModel.metadata` with every table module
imported (`shared.store.engine` imports them). Run through `shared.store.migrate` (`routeyard db …`), which
hands over an open connection; `alembic` on the command line works too, with `-x url=…` or DATABASE_URL."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlmodel.sql.sqltypes import AutoString

from shared.money import Money
from shared.store.engine import make_engine, metadata
from shared.timeutil import UTCDateTime

config = context.config


def render_item(kind: str, obj: Any, autogen: AutogenContext) -> str | Literal[False]:
    """Revisions name plain SQL types, never routeyard's TypeDecorators: a revision must keep its meaning
    when the code it was written against changes."""
    if kind != "type":
        return False
    if isinstance(obj, Money):
        return "sa.BigInteger()"
    if isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata(),
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
        render_item=render_item,
        user_module_prefix="sa.",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from shared.settings import get_settings

    url = context.get_x_argument(as_dictionary=True).get("url") or get_settings().resolved_database_url()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("routeyard migrations run online only (they need to see the database)")
run_migrations_online()
