"""What to do after a failed call, by error class: retry the same endpoint, fall back to the next, defer the
job, or fail it. Waits are tenacity strategies: exponential backoff with jitter, or the provider's own
`retry-after` when it gave one."""

from __future__ import annotations

from enum import Enum

from tenacity import RetryCallState, wait_exponential_jitter
from tenacity.wait import wait_base

from shared.errors import ErrorClass, ProviderError


class Action(Enum):
    RETRY = "retry"  # same endpoint, after a wait
    NEXT = "next"  # fall back to the next candidate
    FAIL = "fail"  # no other endpoint would do better: the request itself is wrong


POLICY: dict[ErrorClass, Action] = {
    ErrorClass.INVALID_REQUEST: Action.FAIL,
    ErrorClass.CONTEXT_LENGTH: Action.NEXT,
    ErrorClass.AUTH: Action.NEXT,
    ErrorClass.OUT_OF_CREDIT: Action.NEXT,
    ErrorClass.MODEL_NOT_FOUND: Action.NEXT,
    ErrorClass.BAD_RESPONSE: Action.NEXT,
    ErrorClass.RATE_LIMITED: Action.RETRY,
    ErrorClass.TIMEOUT: Action.RETRY,
    ErrorClass.UPSTREAM: Action.RETRY,
    ErrorClass.CONNECTION: Action.RETRY,
}

MAX_INLINE_WAIT_S = 5.0
"""A `retry-after` longer than this is not waited out in place: the job falls back or is deferred."""


def action_for(error: ProviderError) -> Action:
    action = POLICY.get(error.error_class, Action.NEXT)
    if action is Action.RETRY and error.retry_after is not None and error.retry_after > MAX_INLINE_WAIT_S:
        return Action.NEXT
    return action


class wait_provider_hint(wait_base):
    """The provider's `retry-after` when it sent one, else exponential backoff with jitter."""

    def __init__(self, fallback: wait_base | None = None, cap: float = MAX_INLINE_WAIT_S) -> None:
        self.fallback = fallback or wait_exponential_jitter(multiplier=0.25, max=8.0, jitter=0.5)
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            if isinstance(exc, ProviderError) and exc.retry_after is not None:
                return min(exc.retry_after, self.cap)
        return float(self.fallback(retry_state))
