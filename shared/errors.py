"""The error taxonomy: every failure routeyard reports has a class, and the class decides what happens.

    RouteyardError
    ├── ConfigError            the TOML config or an environment setting is wrong (startup, `doctor`)
    ├── InputError             a job line or spec is invalid; carries the line number when there is one
    ├── RoutingError           no endpoint is left for a job; carries why each one was excluded
    └── ProviderError          one provider call failed; `error_class` says how
        ├── InvalidRequest         400: the request itself is wrong → the job fails, no fallback helps
        ├── ContextLengthExceeded  400 (context): skip to an endpoint with a larger context window
        ├── AuthFailed             401/403: that provider key is bad or forbidden → next endpoint
        ├── OutOfCredit            402: the provider account is empty → next endpoint
        ├── ModelNotFound          404: the model is not served there → next endpoint
        ├── RateLimited            429: honour `retry_after`, or move to another endpoint
        ├── ProviderTimeout        408 or no answer within the timeout → retry, then fall back
        ├── UpstreamError          500/502/503/529 → retry, then fall back
        ├── ConnectionFailed       could not connect / connection dropped → retry, then fall back
        └── BadResponse            2xx we cannot parse → fall back

Messages never carry secrets: they are built from provider answers that pass through `redact()`.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
    """Stable names recorded on attempts and jobs; reports and re-queue filters use them."""

    INVALID_REQUEST = "invalid_request"
    CONTEXT_LENGTH = "context_length"
    AUTH = "auth"
    OUT_OF_CREDIT = "out_of_credit"
    MODEL_NOT_FOUND = "model_not_found"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    UPSTREAM = "upstream"
    CONNECTION = "connection"
    BAD_RESPONSE = "bad_response"
    # job-level outcomes that are not a single call's failure
    NO_ROUTE = "no_route"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    DEADLINE = "deadline"
    WORKER_CRASHED = "worker_crashed"
    BUDGET = "budget"
    INTERNAL = "internal"


class RouteyardError(Exception):
    """Base of every error routeyard raises on purpose."""


class ConfigError(RouteyardError):
    pass


class InputError(RouteyardError):
    def __init__(self, message: str, line: int | None = None, code: str = "invalid_request") -> None:
        self.line = line
        self.code = code
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.message = message


class RoutingError(RouteyardError):
    """Nothing is left to call. `reasons` maps each excluded endpoint to why, so the error explains itself."""

    def __init__(self, message: str, reasons: dict[str, str] | None = None) -> None:
        self.reasons = reasons or {}
        detail = "; ".join(f"{ep}: {why}" for ep, why in sorted(self.reasons.items()))
        super().__init__(f"{message} ({detail})" if detail else message)


class ProviderError(RouteyardError):
    error_class: ErrorClass = ErrorClass.UPSTREAM

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.request_id = request_id


class InvalidRequest(ProviderError):
    error_class = ErrorClass.INVALID_REQUEST


class ContextLengthExceeded(ProviderError):
    error_class = ErrorClass.CONTEXT_LENGTH


class AuthFailed(ProviderError):
    error_class = ErrorClass.AUTH


class OutOfCredit(ProviderError):
    error_class = ErrorClass.OUT_OF_CREDIT


class ModelNotFound(ProviderError):
    error_class = ErrorClass.MODEL_NOT_FOUND


class RateLimited(ProviderError):
    error_class = ErrorClass.RATE_LIMITED


class ProviderTimeout(ProviderError):
    error_class = ErrorClass.TIMEOUT


class UpstreamError(ProviderError):
    error_class = ErrorClass.UPSTREAM


class ConnectionFailed(ProviderError):
    error_class = ErrorClass.CONNECTION


class BadResponse(ProviderError):
    error_class = ErrorClass.BAD_RESPONSE


def error_for_status(status: int, message: str, **kw: object) -> ProviderError:
    """Map an HTTP status to the taxonomy; adapters refine (e.g. a 400 that is really a context overflow)."""
    cls: type[ProviderError]
    if status == 400 or status == 422:
        cls = InvalidRequest
    elif status in (401, 403):
        cls = AuthFailed
    elif status == 402:
        cls = OutOfCredit
    elif status == 404:
        cls = ModelNotFound
    elif status == 408:
        cls = ProviderTimeout
    elif status == 429:
        cls = RateLimited
    else:
        cls = UpstreamError
    return cls(message, status_code=status, **kw)  # type: ignore[arg-type]
