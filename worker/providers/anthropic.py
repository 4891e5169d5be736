"""Anthropic Messages (`POST {base}/v1/messages`): system prompt apart from the messages, `max_tokens`
required, usage as input/output tokens, 529 for overload. Answers are returned in OpenAI's chat.completion
shape so results files look the same whoever answered."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.catalog import Endpoint
from shared.errors import BadResponse, ContextLengthExceeded, ProviderError, UpstreamError
from worker.providers.base import (
    ChatRequest,
    ChatResult,
    Credential,
    ProviderAdapter,
    RateLimitInfo,
    chat_completion,
    header_int,
)
from worker.providers.transport import RawResponse

ANTHROPIC_VERSION = "2023-06-01"
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
# OpenAI sampling parameters Anthropic understands under the same or another name
_PARAMS = {"temperature": "temperature", "top_p": "top_p", "stop": "stop_sequences"}


def _reset_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() - time.time())
    except ValueError:
        return None


class AnthropicAdapter(ProviderAdapter):
    wire = "anthropic"

    def _build(
        self, endpoint: Endpoint, request: ChatRequest, credential: Credential
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        system = [m.text() for m in request.messages if m.role in ("system", "developer")]
        messages = [
            {"role": "assistant" if m.role == "assistant" else "user", "content": m.text()}
            for m in request.messages
            if m.role not in ("system", "developer")
        ]
        body: dict[str, Any] = {
            "model": endpoint.upstream_model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        if system:
            body["system"] = "\n\n".join(system)
        for ours, theirs in _PARAMS.items():
            if ours in request.params:
                value = request.params[ours]
                body[theirs] = [value] if ours == "stop" and isinstance(value, str) else value
        if "temperature" in body:
            body["temperature"] = min(float(body["temperature"]), 1.0)  # Anthropic's range is 0..1
        headers = {
            "x-api-key": credential.secret,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
        }
        return f"{self.base_url}/v1/messages", headers, body

    def _parse(self, endpoint: Endpoint, data: Any, response: RawResponse) -> ChatResult:
        try:
            blocks = data["content"]
            usage = data["usage"]
            input_tokens = int(usage["input_tokens"])
            output_tokens = int(usage["output_tokens"])
            text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadResponse(f"{self.name}: answer lacks content or usage ({e!r})", status_code=200) from None
        cached = int(usage.get("cache_read_input_tokens") or 0)
        finish = _STOP_REASONS.get(str(data.get("stop_reason")), "stop")
        model = data.get("model", endpoint.upstream_model)
        body = chat_completion(data.get("id", ""), model, text, finish, input_tokens + cached, output_tokens)
        return ChatResult(
            body=body,
            input_tokens=input_tokens + cached,
            output_tokens=output_tokens,
            cached_tokens=cached,
            request_id=self._request_id(response.headers) or data.get("id"),
            status_code=response.status,
        )

    def _classify(self, status: int, code: str | None, message: str, response: RawResponse) -> ProviderError:
        err = super()._classify(status, code, message, response)
        if status == 400 and "prompt is too long" in message:
            return ContextLengthExceeded(message, status_code=status, request_id=err.request_id)
        if status == 529:
            return UpstreamError(message, status_code=status, retry_after=err.retry_after, request_id=err.request_id)
        return err

    def _rate_limits(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        if "anthropic-ratelimit-requests-limit" not in headers and "anthropic-ratelimit-tokens-limit" not in headers:
            return None
        return RateLimitInfo(
            limit_requests=header_int(headers.get("anthropic-ratelimit-requests-limit")),
            remaining_requests=header_int(headers.get("anthropic-ratelimit-requests-remaining")),
            reset_requests_s=_reset_seconds(headers.get("anthropic-ratelimit-requests-reset")),
            limit_tokens=header_int(headers.get("anthropic-ratelimit-tokens-limit")),
            remaining_tokens=header_int(headers.get("anthropic-ratelimit-tokens-remaining")),
            reset_tokens_s=_reset_seconds(headers.get("anthropic-ratelimit-tokens-reset")),
        )
