"""Schema migrations on SQLite and PostgreSQL: a database at the baseline (or created before migrations
existed) is upgraded by `Store.open` with its data intact, and running every revision from empty gives the
same schema as the models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from ry_helpers import PG_ADMIN_URL
from sqlalchemy import inspect, text

from shared.store import Store, migrate
from shared.store.engine import make_engine, metadata


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it (PostgreSQL: one created for this test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    request.getfixturevalue("pg_database")  # skips (or, in CI, fails) when PostgreSQL is down
    import psycopg

    name = f"routeyard_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_BASELINE_ROWS = [
    "INSERT INTO batches (id, created_at, updated_at, state, priority, n_total, n_rejected, n_succeeded, n_failed,"
    " n_cancelled, cost_total, unpriced_calls, input_tokens, output_tokens)"
    " VALUES ('bat_1', :t, :t, 'completed', 1, 1, 0, 0, 1, 0, 1500000, 0, 0, 0)",
    "INSERT INTO jobs (id, batch_id, state, priority, class_name, spec, created_at, updated_at, finished_at, runs,"
    " attempts, unpriced_calls, error_class) VALUES ('job_1', 'bat_1', 'failed', 1, 'basic', '{\"prompt\": \"hi\"}',"
    " :t, :t, :t, 1, 1, 0, 'upstream')",
    "INSERT INTO attempts (id, job_id, batch_id, seq, run, worker_id, endpoint, provider, model, billed_to, status,"
    " started_at, cost, reserved_cost, cost_estimated) VALUES ('att_1', 'job_1', 'bat_1', 1, 1, 'w', 'alpha/small',"
    " 'alpha', 'small', 'credits', 'abandoned', :t, 1500000, 1500000, :yes)",
]


@pytest.mark.parametrize("how", ["stamped", "legacy"])
def test_upgrade_from_the_baseline_keeps_the_data(empty_db: str, how: str) -> None:
    engine = make_engine(empty_db)
    try:
        migrate.upgrade(engine, migrate.BASELINE)
        assert migrate.current(engine) == migrate.BASELINE
        with engine.begin() as conn:
            for sql in _BASELINE_ROWS:
                conn.execute(text(sql), {"t": "2025-01-02 03:04:05", "yes": True})
            if how == "legacy":  # a database made by create_all before migrations existed: no version table
                conn.execute(text("DROP TABLE alembic_version"))
        assert "requeues" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    finally:
        engine.dispose()

    store = Store.open(empty_db)  # migrates to head
    try:
        assert migrate.current(store.engine) == migrate.head()
        job = store.read_sync(lambda c: c.execute(text("SELECT * FROM jobs")).mappings().one())
        assert job["state"] == "failed" and job["requeues"] == 0 and job["error_class"] == "upstream"
        from shared.store import queries

        full = store.read_sync(queries.job("job_1"))
        assert full["attempt_rows"][0]["cost"] == Decimal("0.0015")
        batch = store.read_sync(queries.batch("bat_1"))
        assert batch["cost_total"] == Decimal("0.0015") and batch["n_failed"] == 1
        assert "ix_jobs_state_finished" in {i["name"] for i in inspect(store.engine).get_indexes("jobs")}
    finally:
        store.close_sync()


def test_revisions_from_empty_equal_the_models(empty_db: str) -> None:
    """What `Store.open` creates for a new database (create_all + stamp) and what upgrading an old one
    produces are the same schema: a model change without its revision fails here."""
    engine = make_engine(empty_db)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata())
        assert diffs == []
        assert migrate.ensure_schema(engine) == "at head"
    finally:
        engine.dispose()


def test_upgrade_to_0004_attributes_earlier_jobs_and_calls_to_their_keys_team(empty_db: str) -> None:
    engine = make_engine(empty_db)
    try:
        migrate.upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO api_keys (id, name, environment, team, project, labels, limit_reset,"
                    " include_byok_in_limit, disabled, admin, secret_hash, created_at) VALUES ('key_1', 'k', 'prod',"
                    " 'ml', 'evals', '[]', 'none', :no, :no, :no, 'h', :t)"
                ),
                {"t": "2025-01-02 03:04:05", "no": False},
            )
            for sql in _BASELINE_ROWS:
                conn.execute(text(sql), {"t": "2025-01-02 03:04:05", "yes": True})
            conn.execute(text("UPDATE jobs SET api_key_id = 'key_1'"))
            conn.execute(text("UPDATE attempts SET api_key_id = 'key_1'"))
        migrate.upgrade(engine)
        with engine.connect() as conn:
            for table in ("jobs", "attempts"):
                row = conn.execute(text(f"SELECT team, project, environment FROM {table}")).one()  # noqa: S608
                assert tuple(row) == ("ml", "evals", "prod"), table
    finally:
        engine.dispose()
