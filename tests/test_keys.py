"""Router API keys on both stores: tokens shown once and stored as hashes, authentication (disabled,
expired, rotated), and what a key refuses at submission — over its limit, disabled, expired, or asking for
a class, model or provider it does not allow."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest
from arq.connections import ArqRedis
from key_helpers import NOW, add_call
from ry_helpers import make_config
from sqlalchemy import func, select

from producer.client import BatchOptions, Producer
from shared.audit import audit_rows
from shared.auth import Principal
from shared.catalog import Catalog
from shared.keys import KeyAuthenticator, KeyRefused, KeyStore, hash_token, parse_token
from shared.models import JobSpec
from shared.periods import period_bounds
from shared.queue import JobQueue
from shared.redaction import redact
from shared.redis_keys import Keys
from shared.store import Store
from shared.tables import Batch
from shared.tables_keys import RouterKey
from shared.timeutil import utcnow


@pytest.fixture
async def producer(store: Store, fake_redis: ArqRedis, key_prefix: str) -> AsyncIterator[Producer]:
    yield Producer(store, JobQueue(fake_redis, Keys(key_prefix)), Catalog.from_config(make_config()))


def _specs(*lines: dict[str, object]) -> list[JobSpec]:
    return [JobSpec.model_validate(x) for x in lines]


# ---------------------------------------------------------------------------------------------- tokens
async def test_token_is_shown_once_and_only_its_hash_is_stored(store: Store) -> None:
    key, token = await KeyStore(store).create("ci", environment="prod", team="ml", labels=["sensitive", "eval"])
    assert token.startswith("ry_live_") and parse_token(token) == key.id
    assert len(token) == len("ry_live_") + 26 + 43
    rows = store.read_sync(lambda c: [dict(r) for r in c.execute(select(RouterKey.__table__)).mappings()])  # type: ignore[attr-defined]
    assert len(rows) == 1
    assert rows[0]["secret_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(rows) and token[-43:] not in repr(rows)
    assert redact(f"Authorization: Bearer {token}") == "Authorization: Bearer [redacted]"
    assert redact(f"key={token}") == "key=[redacted]"  # the shape is caught even when the value is not known
    _, dev = await KeyStore(store).create("dev key")
    assert dev.startswith("ry_test_") and dev[-43:] != token[-43:]


async def test_authenticator_resolves_a_principal(store: Store) -> None:
    ks = KeyStore(store)
    key, token = await ks.create("ci", environment="staging", team="ml", project="evals", labels=["sensitive"])
    auth = KeyAuthenticator(store)
    p = await auth.authenticate(token)
    assert p == Principal(
        key_id=key.id,
        name="ci",
        admin=False,
        team="ml",
        project="evals",
        environment="staging",
        labels=frozenset({"sensitive"}),
    )
    assert p.tenant == key.id
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (wrong, "", "ry_live_short", "sk-" + token, token + "x", token.replace("ry_test_", "ry_live_")):
        assert await auth.authenticate(bad) is None


async def test_disabled_expired_and_rotated_keys_do_not_authenticate(store: Store) -> None:
    ks = KeyStore(store)
    key, token = await ks.create("ci", expires_at=NOW + timedelta(days=1), admin=True)
    assert (await KeyAuthenticator(store, now=lambda: NOW).authenticate(token)) is not None
    assert (await KeyAuthenticator(store, now=lambda: NOW).authenticate(token)).tenant is None  # type: ignore[union-attr]
    assert await KeyAuthenticator(store, now=lambda: NOW + timedelta(days=1)).authenticate(token) is None
    auth = KeyAuthenticator(store, now=lambda: NOW)
    disabled = await ks.set_disabled(key.id, True)
    assert disabled is not None and disabled.disabled and disabled.disabled_at is not None
    assert await auth.authenticate(token) is None
    await ks.set_disabled(key.id, False)
    assert await auth.authenticate(token) is not None
    rotated = await ks.rotate(key.id)
    assert rotated is not None
    new_key, new_token = rotated
    assert new_token != token and new_key.rotated_at is not None
    assert await auth.authenticate(token) is None
    assert await auth.authenticate(new_token) is not None
    assert await ks.rotate("key_nope") is None and await ks.set_disabled("key_nope", True) is None


async def test_key_creation_validates(store: Store) -> None:
    from shared.errors import InputError

    ks = KeyStore(store)
    for kwargs in (
        {"environment": "production"},
        {"limit_reset": "hourly"},
        {"limit": Decimal("-1")},
    ):
        with pytest.raises(InputError):
            await ks.create("x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        await ks.create("  ")
    assert hash_token("a") != hash_token("b")


# ---------------------------------------------------------------------------------------------- submission
async def test_a_key_at_its_limit_is_refused_naming_limit_spend_and_reset(store: Store, producer: Producer) -> None:
    key, _ = await KeyStore(store).create("ci", limit=Decimal("0.01"), limit_reset="monthly")
    now = utcnow()
    add_call(store, key.id, cost=Decimal("0.004"), started_at=now)
    add_call(store, key.id, cost=Decimal("0.006"), started_at=now)  # exactly at the limit
    before = period_bounds("monthly", now).start - timedelta(seconds=1)
    add_call(store, key.id, cost=Decimal("5"), started_at=before)  # last month's spend does not count
    with pytest.raises(KeyRefused) as info:
        await producer.submit_specs(_specs({"prompt": "hi"}), BatchOptions(api_key_id=key.id))
    err = info.value
    assert err.code == "key_limit_exceeded" and err.http_status == 402
    assert err.limit == Decimal("0.01") and err.spent == Decimal("0.01")
    assert err.reset_at == period_bounds("monthly", now).end
    text = str(err)
    assert "$0.01 per month" in text and "spent $0.010000" in text and "resets at" in text
    assert err.to_json()["error"]["code"] == "key_limit_exceeded"
    # nothing was stored, and the refusal is in the audit
    assert store.read_sync(lambda c: c.execute(select(func.count()).select_from(Batch.__table__)).scalar_one()) == 0  # type: ignore[attr-defined]
    [row] = await store.read(audit_rows(key_id=key.id))
    assert (row["source"], row["code"], row["occurrences"]) == ("submission", "key_limit_exceeded", 1)


async def test_under_the_limit_a_key_submits(store: Store, producer: Producer) -> None:
    key, _ = await KeyStore(store).create("ci", limit=Decimal("1"), limit_reset="daily")
    add_call(store, key.id, cost=Decimal("0.5"), started_at=utcnow())
    report = await producer.submit_specs(_specs({"prompt": "a"}, {"prompt": "b"}), BatchOptions(api_key_id=key.id))
    assert report.accepted == 2 and not report.errors


@pytest.mark.parametrize(
    ("change", "code", "status"),
    [("disable", "key_disabled", 403), ("expire", "key_expired", 401), ("unknown", "invalid_api_key", 401)],
)
async def test_disabled_expired_and_unknown_keys_are_refused(
    store: Store, producer: Producer, change: str, code: str, status: int
) -> None:
    ks = KeyStore(store)
    key, _ = await ks.create("ci", expires_at=NOW if change == "expire" else None)
    key_id = "key_" + "0" * 26 if change == "unknown" else key.id
    if change == "disable":
        await ks.set_disabled(key.id, True)
    with pytest.raises(KeyRefused) as info:
        await producer.submit_specs(_specs({"prompt": "x"}), BatchOptions(api_key_id=key_id))
    assert info.value.code == code and info.value.http_status == status


async def test_a_principal_supplies_the_key(store: Store, producer: Producer) -> None:
    ks = KeyStore(store)
    key, _ = await ks.create("ci")
    await ks.set_disabled(key.id, True)
    with pytest.raises(KeyRefused, match="disabled"):
        await producer.submit_specs(_specs({"prompt": "x"}), BatchOptions(principal=key.principal()))
    admin = Principal(key_id=None, name="bootstrap", admin=True)
    assert (await producer.submit_specs(_specs({"prompt": "x"}), BatchOptions(principal=admin))).accepted == 1


async def test_lines_asking_for_what_the_key_does_not_allow_are_refused_the_rest_run(
    store: Store, producer: Producer
) -> None:
    key, _ = await KeyStore(store).create(
        "ci", allowed_classes=["basic"], allowed_models=["small"], allowed_providers=["alpha", "beta"]
    )
    report = await producer.submit_specs(
        _specs(
            {"prompt": "ok"},
            {"prompt": "ok", "model": "small-a"},  # a provider's own name for an allowed model
            {"prompt": "no", "model": "big"},
            {"prompt": "no", "class": "bigonly"},
            {"prompt": "no", "provider": {"only": ["gamma"]}},
            {"prompt": "ok", "provider": {"order": ["beta"]}},
        ),
        BatchOptions(api_key_id=key.id),
    )
    assert report.accepted == 3
    assert {(e.line_no, e.code) for e in report.errors} == {
        (3, "model_not_allowed"),
        (4, "class_not_allowed"),
        (5, "provider_not_allowed"),
    }
    assert all(key.id in e.message for e in report.errors)
    # the accepted plain line carries the key's allowance, so the worker routes within it
    jobs = await producer.batch(report.batch_id or "")
    assert jobs is not None and jobs["n_total"] == 3 and jobs["api_key_id"] == key.id
    from shared.store import queries

    page = await store.read(queries.job_page(report.batch_id or ""))
    assert [queries.spec_of(r).get("models") for r in page] == [["small"]] * 3
    codes = {r["code"]: r["occurrences"] for r in await store.read(audit_rows(key_id=key.id))}
    assert codes == {"model_not_allowed": 1, "class_not_allowed": 1, "provider_not_allowed": 1}


async def test_a_sensitive_key_that_leaves_no_zdr_endpoint_is_refused_per_line(
    store: Store, producer: Producer
) -> None:
    # no endpoint of the test config is zero-data-retention: a `sensitive` key's jobs cannot run anywhere
    key, _ = await KeyStore(store).create("phi", labels=["sensitive"])
    report = await producer.submit_specs(_specs({"prompt": "x"}), BatchOptions(api_key_id=key.id))
    assert report.accepted == 0 and [e.code for e in report.errors] == ["no_route"]
    assert "zero data retention" in report.errors[0].message


async def test_strict_mode_checks_the_key_too(store: Store, producer: Producer, tmp_path: object) -> None:
    from pathlib import Path

    key, _ = await KeyStore(store).create("ci", allowed_models=["small"])
    f = Path(str(tmp_path)) / "in.jsonl"
    f.write_text('{"prompt": "a"}\n{"prompt": "b", "model": "big"}\n')
    report = await producer.submit_file(f, BatchOptions(api_key_id=key.id, strict=True))
    assert report.rejected_all and [e.code for e in report.errors] == ["model_not_allowed"]
