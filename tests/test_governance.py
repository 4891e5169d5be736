"""Governance: the organisation's policy narrowed by a key (pure), and the audit of denials — counters per
(day, key, endpoint, reason), so a 100k-job sensitive batch writes a handful of rows, not 100k per endpoint."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from ry_helpers import TEST_CONFIG, make_config
from sqlalchemy import func, select

from shared.audit import DenialBuffer, audit_rows, record_refusal
from shared.catalog import Catalog
from shared.config import PolicyConfig
from shared.governance import policy_for_key
from shared.keys import ApiKey, KeyStore
from shared.models import JobSpec
from shared.store import Store
from shared.tables_keys import PolicyDenial
from worker.router import Why, plan

PROVIDERS = ["alpha", "beta", "gamma"]
ZDR_CONFIG = TEST_CONFIG.replace(
    '[providers.beta]\nbase_url = "sim://beta"', '[providers.beta]\nbase_url = "sim://beta"\nzdr = true'
)


def _key(**kw: Any) -> ApiKey:
    base: dict[str, Any] = {
        "id": "key_x",
        "name": "x",
        "environment": "dev",
        "team": None,
        "project": None,
        "labels": frozenset(),
        "expires_at": None,
        "allowed_classes": None,
        "allowed_models": None,
        "allowed_providers": None,
        "limit": None,
        "limit_reset": "none",
        "include_byok_in_limit": False,
        "disabled": False,
        "admin": False,
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    return ApiKey(**{**base, **kw})


subsets = st.one_of(st.none(), st.lists(st.sampled_from(PROVIDERS), unique=True))


@given(org_allow=subsets, key_allow=subsets, labels=st.sets(st.sampled_from(["sensitive", "eval", "pii"])))
def test_a_key_only_ever_narrows_the_organisation_policy(
    org_allow: list[str] | None, key_allow: list[str] | None, labels: set[str]
) -> None:
    org = PolicyConfig(allow_providers=org_allow, ignore_providers=["gamma"], zdr_labels=["sensitive", "pii"])
    narrowed = policy_for_key(
        org, _key(allowed_providers=None if key_allow is None else frozenset(key_allow), labels=frozenset(labels))
    )
    if narrowed.allow_providers is None:
        assert org_allow is None and key_allow is None
    else:
        assert set(narrowed.allow_providers) <= set(key_allow if key_allow is not None else PROVIDERS)
        assert set(narrowed.allow_providers) <= set(org_allow if org_allow is not None else PROVIDERS)
    assert narrowed.ignore_providers == org.ignore_providers and narrowed.regions == org.regions
    assert narrowed.zdr == bool(labels & {"sensitive", "pii"})
    assert narrowed.data_collection == ("deny" if narrowed.zdr else org.data_collection)
    assert policy_for_key(org, None) is org


def test_a_sensitive_key_routes_only_to_zdr_endpoints() -> None:
    catalog = Catalog.from_config(make_config(ZDR_CONFIG))
    spec = JobSpec(prompt="x")
    org = catalog.config.policy
    normal = plan(spec, catalog, policy_for_key(org, _key()), seed=1)
    assert {c.endpoint.provider for c in normal.candidates} == {"alpha", "beta", "gamma"}
    sensitive = plan(spec, catalog, policy_for_key(org, _key(labels=frozenset({"sensitive"}))), seed=1)
    assert [c.endpoint.provider for c in sensitive.candidates] == ["beta"]
    assert {e.why for e in sensitive.excluded.values()} == {Why.DATA_POLICY}
    only_alpha = plan(spec, catalog, policy_for_key(org, _key(allowed_providers=frozenset({"alpha"}))), seed=1)
    assert [c.endpoint.provider for c in only_alpha.candidates] == ["alpha"]
    assert {e.why for e in only_alpha.excluded.values()} == {Why.POLICY}


async def test_a_100k_job_sensitive_batch_writes_a_row_per_excluded_endpoint(store: Store) -> None:
    key, _ = await KeyStore(store).create("phi", team="health", labels=["sensitive"])
    catalog = Catalog.from_config(make_config(ZDR_CONFIG))
    the_plan = plan(JobSpec(prompt="x"), catalog, policy_for_key(catalog.config.policy, key), seed=1)
    governance = {slug for slug, e in the_plan.excluded.items() if e.why in (Why.POLICY, Why.DATA_POLICY)}
    assert len(governance) == 2
    clock = [datetime(2024, 3, 1, 23, 0, tzinfo=UTC)]
    buf = DenialBuffer(now=lambda: clock[0])
    for i in range(100_000):
        buf.add(key.id, the_plan.excluded, batch_id="bat_1", job_id=f"job_{i}")
        if i % 25_000 == 24_999:  # the worker flushes every few seconds
            await buf.flush(store)
    assert await buf.flush(store) == 0 and len(buf) == 0
    n_rows = store.read_sync(lambda c: c.execute(select(func.count()).select_from(PolicyDenial.__table__)).scalar_one())  # type: ignore[attr-defined]
    assert n_rows == 2
    rows = await store.read(audit_rows(key_id=key.id))
    assert {r["endpoint"] for r in rows} == governance
    assert all(r["occurrences"] == 100_000 and r["code"] == "data_policy" for r in rows)
    assert all(r["last_job_id"] == "job_99999" and r["team"] == "health" and r["key_name"] == "phi" for r in rows)
    assert {r["reason"] for r in rows} == {
        "the endpoint retains prompts (zero data retention required)",
        "the provider may train on prompts (data_collection: deny)",
    }
    # a new UTC day starts new rows
    clock[0] += timedelta(hours=2)
    buf.add(key.id, the_plan.excluded)
    await buf.flush(store)
    days = {r["day"]: r["occurrences"] for r in await store.read(audit_rows(key_id=key.id))}
    assert days == {date(2024, 3, 1): 100_000, date(2024, 3, 2): 1}


async def test_audit_filters(store: Store) -> None:
    ks = KeyStore(store)
    a, _ = await ks.create("a", team="ml")
    b, _ = await ks.create("b", team="web")
    day = datetime(2024, 5, 10, 9, 0, tzinfo=UTC)
    await record_refusal(store, a.id, "key_limit_exceeded", "over $1", now=day)
    await record_refusal(store, a.id, "key_limit_exceeded", "over $1", now=day, n=4)
    await record_refusal(store, b.id, "model_not_allowed", "model 'big'", now=day + timedelta(days=1))
    await record_refusal(store, None, "invalid_api_key", "no router key", now=day)
    buf = DenialBuffer(now=lambda: day)

    class Ex:
        why = Why.POLICY
        reason = "provider 'gamma' is blocked by organisation blocklist"

    class Pref:
        why = Why.PREFERENCE
        reason = "provider.ignore"

    assert buf.add(b.id, {"big/gamma": Ex(), "small/alpha": Pref()}) == 1  # the job's own preferences are not audited
    await buf.flush(store)

    def q(**kw: Any) -> list[tuple[str, str, int]]:
        return [(r["api_key_id"], r["code"], r["occurrences"]) for r in store.read_sync(audit_rows(**kw))]

    assert q(key_id=a.id) == [(a.id, "key_limit_exceeded", 5)]
    assert q(team="web") == [(b.id, "model_not_allowed", 1), (b.id, "policy", 1)]
    assert q(source="routing") == [(b.id, "policy", 1)]
    assert q(code="invalid_api_key") == [("", "invalid_api_key", 1)]
    assert q(since=date(2024, 5, 11)) == [(b.id, "model_not_allowed", 1)]
    assert q(until=date(2024, 5, 10), endpoint="big/gamma") == [(b.id, "policy", 1)]
    assert len(q()) == 4 and len(q(limit=2)) == 2
