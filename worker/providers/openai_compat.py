"""OpenAI-compatible chat completions: OpenAI, Azure OpenAI, Groq, Together, Cerebras, DeepInfra, DeepSeek
and the many hosts that copy the format. Base URL convention as in the OpenAI SDK: it ends in `/v1`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shared.catalog import Endpoint
from shared.errors import BadResponse, ContextLengthExceeded, ProviderError
from worker.providers.base import (
    ChatRequest,
    ChatResult,
    Credential,
    ProviderAdapter,
    RateLimitInfo,
    header_int,
)
from worker.providers.transport import RawResponse

# OpenAI's reasoning models refuse `max_tokens` and want `max_completion_tokens`.
_COMPLETION_TOKENS_MODELS = re.compile(r"^(o\d|gpt-5)")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | None) -> float | None:
    """OpenAI's reset durations: `1s`, `6m0s`, `120ms`, `1h2m3.5s` → seconds."""
    if not value:
        return None
    parts = _DURATION.findall(value)
    if not parts:
        try:
            return float(value)
        except ValueError:
            return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


class OpenAICompatAdapter(ProviderAdapter):
    wire = "openai"

    def _build(
        self, endpoint: Endpoint, request: ChatRequest, credential: Credential
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        body: dict[str, Any] = {
            "model": endpoint.upstream_model,
            "messages": [m.model_dump(exclude_none=True) for m in request.messages],
        }
        token_field = (
            "max_completion_tokens" if _COMPLETION_TOKENS_MODELS.match(endpoint.upstream_model) else "max_tokens"
        )
        body[token_field] = request.max_tokens
        body.update(request.params)
        headers = {"authorization": f"Bearer {credential.secret}", "content-type": "application/json"}
        return f"{self.base_url}/chat/completions", headers, body

    def _parse(self, endpoint: Endpoint, data: Any, response: RawResponse) -> ChatResult:
        try:
            choices = data["choices"]
            usage = data["usage"]
            input_tokens = int(usage["prompt_tokens"])
            output_tokens = int(usage.get("completion_tokens") or 0)
        except (KeyError, TypeError, ValueError) as e:
            raise BadResponse(f"{self.name}: answer lacks choices or usage ({e!r})", status_code=200) from None
        if not isinstance(choices, list) or not choices:
            raise BadResponse(f"{self.name}: answer has no choices", status_code=200)
        details = usage.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        return ChatResult(
            body=data,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached,
            request_id=self._request_id(response.headers) or data.get("id"),
            status_code=response.status,
        )

    def _classify(self, status: int, code: str | None, message: str, response: RawResponse) -> ProviderError:
        err = super()._classify(status, code, message, response)
        if status == 400 and (code == "context_length_exceeded" or "maximum context length" in message):
            return ContextLengthExceeded(message, status_code=status, request_id=err.request_id)
        return err

    def _rate_limits(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        if "x-ratelimit-limit-requests" not in headers and "x-ratelimit-limit-tokens" not in headers:
            return None
        return RateLimitInfo(
            limit_requests=header_int(headers.get("x-ratelimit-limit-requests")),
            remaining_requests=header_int(headers.get("x-ratelimit-remaining-requests")),
            reset_requests_s=parse_duration(headers.get("x-ratelimit-reset-requests")),
            limit_tokens=header_int(headers.get("x-ratelimit-limit-tokens")),
            remaining_tokens=header_int(headers.get("x-ratelimit-remaining-tokens")),
            reset_tokens_s=parse_duration(headers.get("x-ratelimit-reset-tokens")),
        )
