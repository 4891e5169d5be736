"""Spend from the ledger (what counts against a key's limit, unknown prices kept unknown), the budget seam the
worker rebuilds Redis counters from, and usage attribution per key, team, project and environment."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from key_helpers import NOW, add_call, add_job

from shared.keys import KeyStore
from shared.periods import EPOCH, period_bounds
from shared.spend import key_budget, spend
from shared.store import Store
from shared.usage import usage_by

D = Decimal


async def test_spend_counts_credits_and_fees_and_byok_only_when_included(store: Store) -> None:
    key, _ = await KeyStore(store).create("ci")
    add_call(store, key.id, cost=D("0.010"))
    add_call(store, key.id, cost=D("0.200"), billed_to="byok", fee=D("0.010"))
    add_call(store, key.id, cost=D("0"), status="failed")  # errors are not billed
    add_call(store, key.id, cost=D("0.003"), status="abandoned", reserved=D("0.003"))  # counts its reservation
    add_call(store, key.id, cost=None, status="started", reserved=D("0.050"))  # in flight
    add_call(store, key.id, cost=D("9"), started_at=NOW - timedelta(days=1))  # before the period
    add_call(store, "key_other", cost=D("7"))  # another key
    start = NOW - timedelta(hours=1)
    s = await store.read(spend(key.id, start))
    assert (s.credits_cost, s.fees, s.byok_cost, s.in_flight) == (D("0.013"), D("0.01"), D("0.2"), D("0.05"))
    assert s.spent == D("0.023") and s.complete and s.calls == 5 and s.jobs == 5
    assert (s.input_tokens, s.output_tokens) == (200, 100)
    with_byok = await store.read(spend(key.id, start, include_byok=True))
    assert with_byok.spent == D("0.223")
    assert with_byok.in_flight == D("0.05")
    window = await store.read(spend(key.id, NOW - timedelta(days=2), NOW - timedelta(hours=1)))
    assert window.spent == D("9") and window.calls == 1


async def test_unknown_prices_are_reported_never_zero(store: Store) -> None:
    key, _ = await KeyStore(store).create("ci")
    add_call(store, key.id, cost=D("0.5"))
    add_call(store, key.id, cost=None)  # served by an unpriced endpoint
    add_call(store, key.id, cost=None, billed_to="byok", fee=None)  # a BYOK call of unknown price: fee unknown
    add_call(store, key.id, cost=None, status="started", reserved=None)  # in flight, unpriced
    s = await store.read(spend(key.id, EPOCH))
    assert s.spent == D("0.5") and s.unpriced_calls == 3 and not s.complete


async def test_key_budget_is_the_current_period_from_the_ledger(store: Store) -> None:
    key, _ = await KeyStore(store).create("ci", limit=D("1"), limit_reset="weekly", include_byok_in_limit=True)
    start, end = period_bounds("weekly", NOW)
    add_call(store, key.id, cost=D("0.25"), started_at=start)  # the first instant counts
    add_call(store, key.id, cost=D("0.5"), billed_to="byok", fee=D("0.025"), started_at=NOW)
    add_call(store, key.id, cost=None, status="started", reserved=D("0.1"), started_at=NOW)
    add_call(store, key.id, cost=D("3"), started_at=start - timedelta(microseconds=1))  # last week
    b = await store.read(key_budget(key.id, NOW))
    assert b is not None and (b.period_start, b.period_end) == (start, end)
    assert b.limit == D("1") and b.spent == D("0.775") and b.committed == D("0.875")
    assert b.remaining == D("0.125") and not b.exhausted and b.ttl_s == 7 * 86400
    add_call(store, key.id, cost=D("0.125"), started_at=NOW)
    b2 = await store.read(key_budget(key.id, NOW))
    assert b2 is not None and b2.exhausted and b2.remaining == 0
    assert await store.read(key_budget("key_missing", NOW)) is None
    unlimited, _ = await KeyStore(store).create("free")
    u = await store.read(key_budget(unlimited.id, NOW))
    assert u is not None and u.remaining is None and not u.exhausted and u.period_end is None and u.ttl_s is None


async def test_usage_by_team_project_environment_and_key(store: Store) -> None:
    ks = KeyStore(store)
    a, _ = await ks.create("a", team="ml", project="evals", environment="prod")
    b, _ = await ks.create("b", team="ml", project="chat", environment="dev")
    c, _ = await ks.create("c", team="web", project="chat", environment="prod", include_byok_in_limit=True)
    add_call(store, a.id, cost=D("1"), tokens=(10, 1))
    add_call(store, a.id, cost=D("2"), billed_to="byok", fee=D("0.1"), tokens=(20, 2))
    add_call(store, b.id, cost=D("0.5"), tokens=(30, 3))
    add_call(store, c.id, cost=None, tokens=(40, 4))
    add_job(store, c.id)  # submitted, not called yet
    add_call(store, None, cost=D("0.25"))  # no key
    since = NOW - timedelta(hours=1)

    teams = {r.group: r for r in await store.read(usage_by("team", since))}
    assert set(teams) == {"ml", "web", None}
    ml = teams["ml"]
    assert (ml.charged, ml.byok_cost, ml.calls, ml.jobs) == (D("1.6"), D("2"), 3, 3)
    assert (ml.input_tokens, ml.output_tokens) == (60, 6)
    assert teams["web"].unpriced_calls == 1 and teams["web"].charged == 0 and teams["web"].jobs == 2
    assert teams[None].charged == D("0.25")

    projects = {r.group: r.charged for r in await store.read(usage_by("project", since))}
    assert projects == {"evals": D("1.1"), "chat": D("0.5"), None: D("0.25")}
    envs = {r.group: r.calls for r in await store.read(usage_by("environment", since))}
    assert envs == {"prod": 3, "dev": 1, None: 1}
    by_key = await store.read(usage_by("key", since, team="ml"))
    assert [r.group for r in by_key] == [a.id, b.id]  # largest charge first; the team filter applies
    assert await store.read(usage_by("team", NOW + timedelta(hours=1))) == []


async def test_a_key_moved_to_another_team_leaves_its_history_behind(store: Store) -> None:
    from sqlalchemy import update

    from shared.reports import Where, usage_report
    from shared.tables_keys import RouterKey

    key, _ = await KeyStore(store).create("a", team="ml", project="evals")
    add_call(store, key.id, cost=D("1"))
    api_keys = RouterKey.__table__  # type: ignore[attr-defined]
    await store.write_direct(
        lambda conn, deltas: conn.execute(update(api_keys).where(api_keys.c.id == key.id).values(team="web"))
    )
    add_call(store, key.id, cost=D("0.5"))  # made after the move
    since = NOW - timedelta(hours=1)
    teams = {r.group: (r.charged, r.jobs) for r in await store.read(usage_by("team", since))}
    assert teams == {"ml": (D("1"), 1), "web": (D("0.5"), 1)}
    report = await store.read(usage_report(["team"], since, where=Where(team="ml")))
    assert report.totals.total == D("1") and [r.group for r in report.rows] == [{"team": "ml"}]
