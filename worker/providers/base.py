"""The one small interface every provider adapter implements.

An adapter turns a `ChatRequest` into one HTTP call in its wire format and the answer back into a
`ChatResult` in OpenAI's chat.completion shape (what routeyard's results files carry, whatever answered),
or raises a `ProviderError` from the taxonomy in `shared.errors`. Inside an adapter the steps are always
`_build → _send → _parse`, with usage mapped to tokens. Adapters do not retry, choose endpoints or price
calls: the runner does, from the error class.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from shared.catalog import Endpoint
from shared.config import ProviderConfig
from shared.errors import BadResponse, ProviderError, error_for_status
from shared.models import Message
from shared.redaction import redact
from worker.providers.transport import RawResponse, Sender


@dataclass(slots=True)
class ChatRequest:
    messages: list[Message]
    max_tokens: int
    params: dict[str, Any]
    job_id: str
    attempt_id: str


@dataclass(slots=True)
class RateLimitInfo:
    """What a provider said about its limits on this answer (seconds until reset)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


@dataclass(slots=True)
class ChatResult:
    body: dict[str, Any]
    """The answer as an OpenAI chat.completion object."""
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    request_id: str | None = None
    status_code: int = 200
    rate_limits: RateLimitInfo | None = None
    latency_ms: int = 0


@dataclass(slots=True)
class Credential:
    """A provider key and the id the ledger records instead of it."""

    secret: str = field(repr=False)
    ref: str
    billed_to: str = "credits"
    """`credits` (a pooled key: routeyard pays, the key's limit is charged) or `byok` (the team's own key)."""

    def __repr__(self) -> str:  # never print the secret, even in a traceback's locals
        return f"Credential(ref={self.ref!r}, billed_to={self.billed_to!r})"


class ProviderAdapter(ABC):
    wire: ClassVar[str]

    def __init__(self, name: str, config: ProviderConfig, sender: Sender, base_url: str) -> None:
        self.name = name
        self.config = config
        self.sender = sender
        self.base_url = base_url.rstrip("/")

    async def complete(self, endpoint: Endpoint, request: ChatRequest, credential: Credential) -> ChatResult:
        """One call, bounded by the provider's timeout."""
        url, headers, payload = self._build(endpoint, request, credential)
        headers.update(self.config.headers)
        headers["x-routeyard-job-id"] = request.job_id
        headers["x-routeyard-attempt-id"] = request.attempt_id
        started = time.perf_counter()
        try:
            response = await self.sender.post(
                url,
                headers,
                json.dumps(payload).encode(),
                timeout_s=self.config.timeout_s,
                connect_timeout_s=self.config.connect_timeout_s,
            )
        except ProviderError as e:
            e.message = redact(f"{self.name}: {e.message}", [credential.secret])
            e.args = (e.message,)
            raise
        latency_ms = int((time.perf_counter() - started) * 1000)
        if response.status >= 400:
            raise self._error(response, credential)
        try:
            data = json.loads(response.body)
        except ValueError as e:
            raise BadResponse(f"{self.name}: answer is not JSON", status_code=response.status) from e
        result = self._parse(endpoint, data, response)
        result.latency_ms = latency_ms
        result.rate_limits = self._rate_limits(response.headers)
        return result

    def _error(self, response: RawResponse, credential: Credential) -> ProviderError:
        message, code = self._error_message(response)
        message = redact(f"{self.name} answered {response.status}: {message}", [credential.secret])
        return self._classify(response.status, code, message, response)

    def _classify(self, status: int, code: str | None, message: str, response: RawResponse) -> ProviderError:
        return error_for_status(
            status,
            message,
            retry_after=retry_after_seconds(response.headers),
            request_id=self._request_id(response.headers),
        )

    def _error_message(self, response: RawResponse) -> tuple[str, str | None]:
        """The provider's own error message and code, if the body carries them."""
        try:
            data = json.loads(response.body)
        except ValueError:
            return response.body[:300].decode(errors="replace") or response.reason, None
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            code = err.get("code") or err.get("type") or err.get("status")
            return str(err.get("message", ""))[:500], None if code is None else str(code)
        return str(data)[:300], None

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-request-id") or headers.get("request-id")

    def _rate_limits(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        return None

    @abstractmethod
    def _build(
        self, endpoint: Endpoint, request: ChatRequest, credential: Credential
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        """URL, headers and JSON body of the call."""

    @abstractmethod
    def _parse(self, endpoint: Endpoint, data: Any, response: RawResponse) -> ChatResult:
        """The provider's answer as a ChatResult; raise BadResponse when it does not fit."""


def header_int(value: str | None) -> int | None:
    """A rate-limit header's number, or None when it is absent or not a number."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def chat_completion(
    response_id: str, model: str, text: str, finish_reason: str, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    """An answer from another wire format in OpenAI's chat.completion shape, which results files carry."""
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms` (OpenAI, Anthropic) wins over `retry-after` (seconds, or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
