"""One job's way through the worker: plan, then call candidates in order — retrying an endpoint on
transient errors, falling back on errors another endpoint may not have, failing on errors none would fix —
with every call admitted first (circuit, shared rate limits, budgets), recorded before it is made and
settled once it is answered.

Bounds: at most `routing.max_attempts` calls per job across all runs, and nothing after its deadline.
Outcome for the dispatcher: `Done` (terminal state recorded), `Deferred` (back to the queue until a rate
limit or circuit allows, or after a backoff when every candidate failed transiently; no run burned) or
`Held` (a budget cannot cover it: `budget_exhausted`).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base

from shared.errors import ErrorClass, ProviderError
from shared.events import JobFinished
from shared.ids import attempt_id
from shared.keys import ApiKey
from shared.models import JobSpec
from shared.redaction import redact
from shared.store import ops
from shared.store.records import AttemptEnd, AttemptStart, ClaimedJob, JobFailure, JobSuccess
from shared.timeutil import utcnow
from worker.admission import BudgetScope, Denial
from worker.context import Runtime
from worker.providers.base import ChatRequest, Credential
from worker.retry import Action, action_for, wait_provider_hint
from worker.router import Candidate, Plan, job_seed, plan

log = logging.getLogger("routeyard.worker")

MAX_RUNS = 5
"""A job claimed this many times without finishing is failing its workers (poison); it fails."""
DEFER_ON_NO_ROUTE_S = 15.0
MAX_DEFER_S = 300.0
TRANSIENT_DEFER_BASE_S = 0.25
"""First wait before a job whose candidates all failed transiently is planned again; doubles per call made."""
TRANSIENT_DEFER_MAX_S = 30.0


@dataclass(slots=True, frozen=True)
class Done:
    pass


@dataclass(slots=True, frozen=True)
class Deferred:
    delay_s: float
    reason: str


@dataclass(slots=True, frozen=True)
class Held:
    reason: str
    scope: str
    limit: Decimal | None
    period: str


Outcome = Done | Deferred | Held


class _OutOfAttempts(Exception):
    pass


class _Denied(Exception):
    def __init__(self, denial: Denial) -> None:
        super().__init__(denial.kind)
        self.denial = denial


@dataclass(slots=True)
class _Run:
    job: ClaimedJob
    spec: JobSpec
    plan: Plan
    deadline: datetime
    seq: int
    attempts_left: int
    spent: Decimal
    """What the job's calls have cost so far, against its `max_cost`."""
    scopes: list[BudgetScope] = field(default_factory=list)
    key: ApiKey | None = None
    """The submitting router key as it is now: its team picks BYOK keys, and its attribution is recorded
    with each call."""

    @property
    def team(self) -> str | None:
        return self.key.team if self.key else None


class JobRunner:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.routing = rt.config.routing

    async def run(self, job: ClaimedJob) -> Outcome:
        spec = JobSpec.model_validate_json(job.spec_json)
        deadline = job.deadline_at or job.created_at + timedelta(seconds=self.routing.job_deadline_s)
        if job.runs > MAX_RUNS:
            return await self._fail(
                job, ErrorClass.WORKER_CRASHED, f"claimed {job.runs} times without finishing: its workers died"
            )
        if utcnow() >= deadline:
            return await self._fail(job, ErrorClass.DEADLINE, f"deadline {deadline.isoformat()} passed")
        view = await self.rt.key_view(job.api_key_id)
        if view.key is not None and (refusal := view.key.refusal(utcnow())) is not None:
            # disabled or expired after the job was accepted: stop spending on it (re-queue once re-enabled)
            return await self._fail(job, ErrorClass.AUTH, str(refusal))
        the_plan = plan(
            spec,
            self.rt.catalog,
            view.policy,
            self.rt.live_state(view.missing),
            seed=job_seed(job.id, self.routing.seed),
        )
        self.rt.denials.add(job.api_key_id, the_plan.excluded, batch_id=job.batch_id, job_id=job.id)
        if not the_plan.candidates:
            if the_plan.only_transient_exclusions and self._may_wait_for_recovery(job):
                return Deferred(DEFER_ON_NO_ROUTE_S, "every allowed endpoint is unhealthy or out of budget")
            return await self._fail(job, ErrorClass.NO_ROUTE, str(the_plan.error()))
        run = _Run(
            job,
            spec,
            the_plan,
            deadline,
            job.attempts,
            self.routing.max_attempts - job.attempts,
            job.cost or Decimal(0),
            key=view.key,
        )
        return await self._execute(run)

    def _may_wait_for_recovery(self, job: ClaimedJob) -> bool:
        """An outage is waited out for `outage_wait_s` from the job's first claim, then the job fails."""
        first = job.started_at or job.created_at
        return (utcnow() - first).total_seconds() < self.routing.outage_wait_s

    async def _execute(self, run: _Run) -> Outcome:
        last: ProviderError | None = None
        waits: list[float] = []
        outage_waits: list[float] = []
        budget: Denial | None = None
        min_context = 0
        for cand in run.plan.candidates:
            if cand.endpoint.context_length <= min_context:
                continue
            max_cost = run.plan.max_cost
            if (
                max_cost is not None
                and cand.worst_case_cost is not None
                and run.spent + cand.worst_case_cost > max_cost
            ):
                continue  # earlier calls used part of the job's budget: only cheaper endpoints still fit
            credential = self.rt.credentials.for_job(cand.endpoint.provider, run.job.api_key_id, run.team)
            if credential is None:
                continue
            try:
                await self._call_with_retries(run, cand, credential)
                return Done()
            except _Denied as d:
                if d.denial.kind == "rate":
                    waits.append(d.denial.wait_s)
                elif d.denial.kind == "health":
                    outage_waits.append(d.denial.wait_s)
                elif d.denial.kind == "budget":
                    budget = d.denial
            except _OutOfAttempts:
                break
            except ProviderError as e:
                last = e
                if action_for(e) is Action.FAIL:
                    return await self._fail(run.job, e.error_class, e.message)
                if e.error_class is ErrorClass.AUTH:
                    self.rt.credentials.disable(credential)
                    log.error("provider key %s was refused (%s); disabled in this worker", credential.ref, e.message)
                if e.error_class is ErrorClass.CONTEXT_LENGTH:
                    min_context = cand.endpoint.context_length
                if e.error_class is ErrorClass.RATE_LIMITED:
                    waits.append(e.retry_after or 1.0)
            if utcnow() >= run.deadline:
                return await self._fail(run.job, ErrorClass.DEADLINE, "deadline passed while retrying")
        if outage_waits and self._may_wait_for_recovery(run.job):
            waits += outage_waits
        return await self._nothing_served(run, last, waits, budget)

    async def _call_with_retries(self, run: _Run, cand: Candidate, credential: Credential) -> None:
        """Call `cand`, retrying transient errors with tenacity's backoff. The first try goes without a
        retry controller: nearly every call succeeds first time, and building one per job costs more than
        the call's own bookkeeping."""
        try:
            await self._call(run, cand, credential)
            return
        except ProviderError as e:
            if action_for(e) is not Action.RETRY or self.routing.retries_per_endpoint == 0:
                raise
            first = e
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.routing.retries_per_endpoint) | _past(run.deadline),
            wait=wait_provider_hint(),
            retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and action_for(e) is Action.RETRY),
            sleep=self.rt.sleep,
            reraise=True,
        )
        await self.rt.sleep(retrying.wait(_state_after(first)))
        async for attempt in retrying:
            with attempt:
                await self._call(run, cand, credential)

    async def _nothing_served(
        self, run: _Run, last: ProviderError | None, waits: list[float], budget: Denial | None
    ) -> Outcome:
        """Every candidate was tried or refused: wait, hold or fail — in that order of preference."""
        if run.attempts_left <= 0:
            detail = f"; last error: {last.message}" if last else ""
            return await self._fail(
                run.job,
                ErrorClass.ATTEMPTS_EXHAUSTED,
                f"{self.routing.max_attempts} calls made without an answer{detail}",
            )
        if waits:
            delay = min(MAX_DEFER_S, max(0.05, min(waits)))
            if utcnow() + timedelta(seconds=delay) < run.deadline:
                return Deferred(delay, "rate limited or circuit open on every candidate")
        if budget is not None and budget.scope is not None:
            scope = next((s for s in run.scopes if s.name == budget.scope), None)
            return Held(
                f"budget exhausted: {budget.scope} ({budget.detail})",
                budget.scope,
                scope.limit if scope else None,
                scope.period if scope else "",
            )
        if last is None:
            return await self._fail(
                run.job, ErrorClass.NO_ROUTE, "no candidate fits the job's budget or has a usable key or a known price"
            )
        if action_for(last) is Action.RETRY:
            # transient errors on every candidate, with calls left: plan again after a backoff (circuits and
            # rate limits will have moved) rather than fail a job that `max_attempts` still allows
            delay = min(TRANSIENT_DEFER_MAX_S, TRANSIENT_DEFER_BASE_S * 2 ** max(0, run.seq - 1))
            delay *= random.uniform(0.5, 1.0)
            if utcnow() + timedelta(seconds=delay) < run.deadline:
                return Deferred(delay, f"every candidate failed transiently; last: {last.message}")
        return await self._fail(run.job, last.error_class, f"every candidate failed; last: {last.message}")

    async def _call(self, run: _Run, cand: Candidate, credential: Credential) -> None:
        """One admitted, recorded, settled call. Raises ProviderError on failure (after recording it)."""
        if run.attempts_left <= 0:
            raise _OutOfAttempts()
        ep, job = cand.endpoint, run.job
        att_id = attempt_id()
        run.scopes = await self.rt.budget_scopes(job)
        worst = cand.worst_case_cost
        worst_fee = self.rt.credentials.fee(credential, worst)
        admitted = await self.rt.admission.admit(
            ep,
            credential.ref,
            att_id,
            tokens=run.plan.input_tokens + run.plan.max_tokens,
            charges=[(s, s.charge(credential.billed_to, worst, worst_fee)) for s in run.scopes],
            timeout_s=self.rt.config.providers[ep.provider].timeout_s,
        )
        if isinstance(admitted, Denial):
            raise _Denied(admitted)
        run.attempts_left -= 1
        run.seq += 1
        started = AttemptStart(
            id=att_id,
            job_id=job.id,
            batch_id=job.batch_id,
            seq=run.seq,
            run=job.runs,
            worker_id=self.rt.worker_id,
            endpoint=ep.slug,
            provider=ep.provider,
            model=ep.model,
            key_ref=credential.ref,
            reserved_cost=cand.worst_case_cost,
            started_at=utcnow(),
            api_key_id=job.api_key_id,
            billed_to=credential.billed_to,
            team=run.team,
            project=run.key.project if run.key else None,
            environment=run.key.environment if run.key else None,
        )
        await self.rt.store.write(ops.start_attempt(started), urgent=True)
        request = ChatRequest(
            messages=run.spec.chat_messages(),
            max_tokens=run.plan.max_tokens,
            params=run.spec.sampling_params(),
            job_id=job.id,
            attempt_id=att_id,
        )
        adapter = self.rt.adapters[ep.provider]
        try:
            if self.rt.call_slots is None:
                result = await adapter.complete(ep, request, credential)
            else:
                async with self.rt.call_slots:
                    result = await adapter.complete(ep, request, credential)
        except ProviderError as e:
            finished = utcnow()
            self.rt.stats.observe_failure(ep.slug)
            await self.rt.store.write(
                ops.finish_attempt(
                    AttemptEnd(
                        id=att_id,
                        job_id=job.id,
                        batch_id=job.batch_id,
                        succeeded=False,
                        finished_at=finished,
                        latency_ms=_ms(started.started_at, finished),
                        http_status=e.status_code,
                        error_class=e.error_class.value,
                        error_message=redact(e.message, self.rt.secrets),
                        request_id=e.request_id,
                    )
                )
            )
            await self.rt.admission.settle(admitted, error=e)
            raise
        self.rt.stats.observe(ep.slug, result.latency_ms, result.output_tokens)
        cost = ep.cost(result.input_tokens, result.output_tokens, result.cached_tokens)
        fee = self.rt.credentials.fee(credential, cost)
        end = AttemptEnd(
            id=att_id,
            job_id=job.id,
            batch_id=job.batch_id,
            succeeded=True,
            finished_at=utcnow(),
            latency_ms=result.latency_ms,
            http_status=result.status_code,
            request_id=result.request_id,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cached_tokens=result.cached_tokens,
            cost=cost,
            fee=fee,
        )
        success = JobSuccess(
            job_id=job.id,
            batch_id=job.batch_id,
            result_json=json.dumps(result.body, separators=(",", ":"), ensure_ascii=False),
            endpoint=ep.slug,
            model=ep.model,
            provider=ep.provider,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
        )
        won = await self.rt.store.write(ops.finish_attempt(end, success))
        charges = [s.charge(credential.billed_to, cost, fee) for s in run.scopes]
        await self.rt.admission.settle(admitted, error=None, charges=charges, rate=result.rate_limits)
        if won:
            self.rt.events.job_finished(JobFinished(job.id, job.batch_id, "succeeded"))

    async def _fail(self, job: ClaimedJob, error_class: ErrorClass, message: str) -> Done:
        failure = JobFailure(job.id, job.batch_id, error_class.value, redact(message, self.rt.secrets))
        if await self.rt.store.write(ops.finish_job(failure)):
            self.rt.events.job_finished(JobFinished(job.id, job.batch_id, "failed"))
        return Done()


class _past(stop_base):
    """tenacity stop condition: the job's deadline has passed."""

    def __init__(self, deadline: datetime) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return utcnow() >= self.deadline


def _state_after(error: BaseException) -> RetryCallState:
    """A tenacity call state for the wait that follows a first failed try (attempt 1)."""
    state = RetryCallState(retry_object=AsyncRetrying(), fn=None, args=(), kwargs={})
    state.set_exception((type(error), error, error.__traceback__))
    return state


def _ms(a: datetime, b: datetime) -> int:
    return int((b - a).total_seconds() * 1000)
