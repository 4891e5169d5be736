"""The store's write rules, on SQLite and PostgreSQL: terminal writes happen once, re-runs never double
count, abandoned calls keep their worst-case cost, batch aggregates follow the jobs."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError

from shared.ids import attempt_id, batch_id, job_id
from shared.store import Store, ops, queries
from shared.store.records import AttemptEnd, AttemptStart, JobFailure, JobSuccess
from shared.tables import Batch, BatchState, Job
from shared.timeutil import utcnow


def _new_batch(store: Store, n: int, *, custom_ids: bool = True) -> tuple[str, list[str]]:
    bid = batch_id()
    now = utcnow()
    ids = [job_id() for _ in range(n)]

    def op(conn, deltas):  # type: ignore[no-untyped-def]
        conn.execute(
            Batch.__table__.insert().values(  # type: ignore[attr-defined]
                id=bid, created_at=now, updated_at=now, state=BatchState.OPEN.value, n_total=n, cost_total=Decimal(0)
            )
        )
        conn.execute(
            Job.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "id": j,
                    "batch_id": bid,
                    "custom_id": f"c{i}" if custom_ids else None,
                    "state": "queued",
                    "priority": 1,
                    "class_name": "simple",
                    "spec": '{"prompt":"hi"}',
                    "created_at": now,
                    "updated_at": now,
                    "runs": 0,
                    "attempts": 0,
                    "unpriced_calls": 0,
                }
                for i, j in enumerate(ids)
            ],
        )

    store.write_sync(op)
    return bid, ids


def _start(jid: str, bid: str, seq: int = 1, reserved: str | None = "0.01", worker: str = "w1") -> AttemptStart:
    return AttemptStart(
        id=attempt_id(),
        job_id=jid,
        batch_id=bid,
        seq=seq,
        run=1,
        worker_id=worker,
        endpoint="openai/gpt-4o-mini",
        provider="openai",
        model="gpt-4o-mini",
        key_ref="pooled:openai",
        reserved_cost=None if reserved is None else Decimal(reserved),
        started_at=utcnow(),
    )


def _end(a: AttemptStart, ok: bool = True, cost: str | None = "0.000123") -> AttemptEnd:
    return AttemptEnd(
        id=a.id,
        job_id=a.job_id,
        batch_id=a.batch_id,
        succeeded=ok,
        finished_at=utcnow(),
        latency_ms=12,
        http_status=200 if ok else 503,
        error_class=None if ok else "upstream",
        input_tokens=10 if ok else None,
        output_tokens=20 if ok else None,
        cost=None if cost is None else Decimal(cost),
    )


def _success(a: AttemptStart, text: str = "answer") -> JobSuccess:
    return JobSuccess(a.job_id, a.batch_id, f'{{"text":"{text}"}}', a.endpoint, a.model, a.provider, 10, 20)


async def test_claim_returns_specs_and_skips_terminal(store: Store) -> None:
    bid, ids = _new_batch(store, 3)
    await store.write(ops.cancel_jobs([ids[2]]))
    claimed = await store.write(ops.claim_jobs(ids + ["job_missing"], "w1"))
    assert sorted(c.id for c in claimed) == sorted(ids[:2])
    assert all(c.runs == 1 and c.spec_json == '{"prompt":"hi"}' for c in claimed)


async def test_success_is_recorded_once_and_counts_once(store: Store) -> None:
    bid, [jid] = _new_batch(store, 1)
    await store.write(ops.claim_jobs([jid], "w1"))
    a = _start(jid, bid)
    await store.write(ops.start_attempt(a))
    assert await store.write(ops.finish_attempt(_end(a), _success(a))) is True
    # the same report again (a retried write, a duplicate worker) changes nothing
    assert await store.write(ops.finish_attempt(_end(a), _success(a, "other"))) is False
    job = await store.read(queries.job(jid))
    assert job["state"] == "succeeded" and job["result"] == '{"text":"answer"}'
    assert job["cost"] == Decimal("0.000123")
    b = await store.read(queries.batch(bid))
    assert (b["n_succeeded"], b["n_failed"], b["state"]) == (1, 0, "completed")
    assert b["cost_total"] == Decimal("0.000123")
    assert (b["input_tokens"], b["output_tokens"]) == (10, 20)


async def test_rerun_never_overwrites_a_success_or_double_counts(store: Store) -> None:
    """Worker A answers; a re-run B (after a lost lease) also answers: B's call is billed and recorded,
    but the job keeps A's result and the batch counts the job once."""
    bid, [jid] = _new_batch(store, 1)
    await store.write(ops.claim_jobs([jid], "A"))
    a = _start(jid, bid, worker="A")
    await store.write(ops.start_attempt(a))
    await store.write(ops.finish_attempt(_end(a), _success(a, "from A")))
    # B was already running it (at-least-once): its terminal write loses
    b_att = _start(jid, bid, seq=2, worker="B")
    await store.write(ops.start_attempt(b_att))
    won = await store.write(ops.finish_attempt(_end(b_att, cost="0.000200"), _success(b_att, "from B")))
    assert won is False
    job = await store.read(queries.job(jid))
    assert job["result"] == '{"text":"from A"}'
    assert job["cost"] == Decimal("0.000323")  # both calls were served, both are in the ledger
    assert [x["status"] for x in job["attempt_rows"]] == ["succeeded", "succeeded"]
    batch = await store.read(queries.batch(bid))
    assert batch["n_succeeded"] == 1
    assert batch["cost_total"] == Decimal("0.000323")


async def test_reclaim_abandons_unfinished_calls_at_worst_case(store: Store) -> None:
    bid, [jid] = _new_batch(store, 1)
    await store.write(ops.claim_jobs([jid], "dead"))
    a = _start(jid, bid, reserved="0.05", worker="dead")
    await store.write(ops.start_attempt(a))
    # the worker dies mid-call; another claims the job
    [again] = await store.write(ops.claim_jobs([jid], "alive"))
    assert again.runs == 2 and again.attempts == 1
    job = await store.read(queries.job(jid))
    [row] = job["attempt_rows"]
    assert row["status"] == "abandoned" and row["cost"] == Decimal("0.05") and row["cost_estimated"]
    assert job["cost"] == Decimal("0.05")
    assert (await store.read(queries.batch(bid)))["cost_total"] == Decimal("0.05")


async def test_late_answer_of_an_abandoned_call_replaces_the_estimate(store: Store) -> None:
    bid, [jid] = _new_batch(store, 1)
    await store.write(ops.claim_jobs([jid], "slow"))
    a = _start(jid, bid, reserved="0.05", worker="slow")
    await store.write(ops.start_attempt(a))
    await store.write(ops.claim_jobs([jid], "other"))  # lease lost: marked abandoned at 0.05
    await store.write(ops.finish_attempt(_end(a, cost="0.001"), _success(a)))  # but it was alive after all
    job = await store.read(queries.job(jid))
    assert job["attempt_rows"][0]["status"] == "succeeded"
    assert job["cost"] == Decimal("0.001")
    assert (await store.read(queries.batch(bid)))["cost_total"] == Decimal("0.001")


async def test_unknown_price_is_recorded_as_unknown_not_zero(store: Store) -> None:
    bid, [jid] = _new_batch(store, 1)
    await store.write(ops.claim_jobs([jid], "w"))
    a = _start(jid, bid, reserved=None)
    await store.write(ops.start_attempt(a))
    await store.write(ops.finish_attempt(_end(a, cost=None), _success(a)))
    job = await store.read(queries.job(jid))
    assert job["cost"] is None and job["unpriced_calls"] == 1
    assert job["attempt_rows"][0]["cost"] is None
    b = await store.read(queries.batch(bid))
    assert b["unpriced_calls"] == 1 and b["cost_total"] == Decimal(0)


async def test_failed_call_costs_nothing_and_failure_is_terminal(store: Store) -> None:
    bid, [jid] = _new_batch(store, 1)
    await store.write(ops.claim_jobs([jid], "w"))
    a = _start(jid, bid)
    await store.write(ops.start_attempt(a))
    failure = JobFailure(jid, bid, "upstream", "boom")
    assert await store.write(ops.finish_attempt(_end(a, ok=False), failure)) is True
    job = await store.read(queries.job(jid))
    assert job["state"] == "failed" and job["cost"] == Decimal(0)
    assert job["attempt_rows"][0]["cost"] == Decimal(0)
    # a later success cannot resurrect it
    assert await store.write(ops.finish_job(_success(a))) is False
    assert (await store.read(queries.batch(bid)))["n_failed"] == 1


async def test_cancel_wins_over_a_running_call(store: Store) -> None:
    bid, [jid, other] = _new_batch(store, 2)
    await store.write(ops.claim_jobs([jid], "w"))
    a = _start(jid, bid)
    await store.write(ops.start_attempt(a))
    assert await store.write(ops.cancel_jobs(batch_id=bid)) == 2
    assert await store.write(ops.finish_attempt(_end(a), _success(a))) is False
    job = await store.read(queries.job(jid))
    assert job["state"] == "cancelled" and job["cost"] == Decimal("0.000123")
    b = await store.read(queries.batch(bid))
    assert (b["n_cancelled"], b["state"]) == (2, "completed")


async def test_release_refunds_the_run(store: Store) -> None:
    bid, [jid] = _new_batch(store, 1)
    await store.write(ops.claim_jobs([jid], "w"))
    assert await store.write(ops.release_job(jid, "w", None, refund_run=True))
    job = await store.read(queries.job(jid))
    assert job["state"] == "queued" and job["runs"] == 0
    # only the holder can release
    await store.write(ops.claim_jobs([jid], "w2"))
    assert not await store.write(ops.release_job(jid, "w", None, refund_run=True))


async def test_duplicate_custom_id_in_a_batch_is_refused_by_the_database(store: Store) -> None:
    bid, [jid] = _new_batch(store, 1)
    now = utcnow()

    def dup(conn, deltas):  # type: ignore[no-untyped-def]
        conn.execute(
            Job.__table__.insert().values(  # type: ignore[attr-defined]
                id=job_id(),
                batch_id=bid,
                custom_id="c0",
                state="queued",
                priority=1,
                class_name="simple",
                spec="{}",
                created_at=now,
                updated_at=now,
                runs=0,
                attempts=0,
                unpriced_calls=0,
            )
        )

    with pytest.raises(IntegrityError):
        store.write_sync(dup)


async def test_group_commit_isolates_a_failing_operation(store: Store) -> None:
    """Many concurrent writes share transactions; one failing op fails alone."""
    bid, ids = _new_batch(store, 50, custom_ids=False)
    await store.write(ops.claim_jobs(ids, "w"))
    atts = [_start(j, bid) for j in ids]
    bad = atts[7]

    def boom(conn, deltas):  # type: ignore[no-untyped-def]
        raise RuntimeError("broken op")

    results = await asyncio.gather(
        *(store.write(ops.start_attempt(a)) for a in atts), store.write(boom), return_exceptions=True
    )
    assert isinstance(results[-1], RuntimeError)
    assert all(r is None for r in results[:-1])
    done = await asyncio.gather(*(store.write(ops.finish_attempt(_end(a), _success(a))) for a in atts))
    assert all(done)
    b = await store.read(queries.batch(bid))
    assert b["n_succeeded"] == 50 and b["cost_total"] == Decimal("0.000123") * 50
    assert bad.id  # the failing op did not take its neighbours down
    assert store.writer.transactions < store.writer.operations  # writes were grouped


async def test_answers_recorded_together_match_answers_recorded_one_by_one(store: Store) -> None:
    """The writer records a transaction's answers in bulk; a race in the group (an abandoned attempt that
    answers late, a job already terminal) sends the whole group down the exact one-by-one path."""
    from shared.store.ops import FinishAttempt
    from shared.store.writer import Deltas, apply_deltas

    bid, ids = _new_batch(store, 6, custom_ids=False)
    await store.write(ops.claim_jobs(ids, "w"))
    atts = [_start(j, bid) for j in ids]
    for a in atts:
        await store.write(ops.start_attempt(a))
    # the clean group: all in bulk
    clean = [ops.finish_attempt(_end(a), _success(a)) for a in atts[:3]]
    with store.engine.begin() as conn:
        deltas = Deltas()
        assert FinishAttempt.run_bulk(conn, deltas, clean) == [True, True, True]
        assert deltas[bid].succeeded == 3 and deltas[bid].cost == Decimal("0.000123") * 3
        apply_deltas(conn, deltas)
    # a racing group: job 3's attempt was declared abandoned by a re-claim, job 4 was cancelled meanwhile
    await store.write(ops.claim_jobs([ids[3]], "other"))
    await store.write(ops.cancel_jobs([ids[4]]))
    racing = [ops.finish_attempt(_end(a, cost="0.0002"), _success(a)) for a in atts[3:]]
    with store.engine.begin() as conn:
        assert FinishAttempt.run_bulk(conn, Deltas(), racing) is None  # nothing written
    results = await asyncio.gather(*(store.write(op) for op in racing))  # the writer's own path
    assert results == [True, False, True]
    jobs = {j: await store.read(queries.job(j)) for j in ids}
    assert [jobs[j]["state"] for j in ids[3:]] == ["succeeded", "cancelled", "succeeded"]
    assert jobs[ids[3]]["attempt_rows"][0]["status"] == "succeeded"  # the late answer replaced "abandoned"
    assert jobs[ids[4]]["cost"] == Decimal("0.0002")  # the cancelled job's call was still served and billed
    b = await store.read(queries.batch(bid))
    # job 3's late answer replaced its worst-case estimate: every call counts once, at its real cost
    ledger = sum((a["cost"] or 0) for j in ids for a in jobs[j]["attempt_rows"])
    assert ledger == Decimal("0.000123") * 3 + Decimal("0.0002") * 3
    assert b["cost_total"] == ledger and b["n_succeeded"] == 5 and b["n_cancelled"] == 1
