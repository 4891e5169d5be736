"""Anthropic Messages: `POST /v1/messages` (and `GET /v1/models`).

Anthropic insists on `anthropic-version` and `max_tokens`; the farm does too, so adapters that forget
them fail here rather than in production. Overload is 529 `overloaded_error`, not 503.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from worker.farm.limits import Budget, Verdict
from worker.farm.tokens import Reply
from worker.farm.wires.base import JSON, FarmError, Headers, Parsed, Route, int_field, model_field, text_parts

_MESSAGES = Route("generate")
_MODELS = Route("models")

_ERRORS: dict[str, tuple[int, str]] = {
    "auth": (401, "authentication_error"),
    "not_found": (404, "not_found_error"),
    "model_not_found": (404, "not_found_error"),
    "invalid": (400, "invalid_request_error"),
    "context_length": (400, "invalid_request_error"),
    "rate_limit": (429, "rate_limit_error"),
    "server": (500, "api_error"),
    "overloaded": (529, "overloaded_error"),
    "timeout": (504, "timeout_error"),
}


def rfc3339(timestamp: float) -> str:
    """A UTC timestamp rounded up to the second, so a client waiting until then is never early."""
    return datetime.fromtimestamp(math.ceil(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _budget_headers(budget: Budget, unit: bytes, now: float) -> list[tuple[bytes, bytes]]:
    prefix = b"anthropic-ratelimit-" + unit
    return [
        (prefix + b"-limit", str(budget.limit).encode()),
        (prefix + b"-remaining", str(budget.remaining).encode()),
        (prefix + b"-reset", rfc3339(now + budget.reset_s).encode()),
    ]


class AnthropicWire:
    name = "anthropic"
    request_id_header = b"request-id"

    def route(self, method: str, rest: str) -> Route | None:
        if rest == "/v1/messages" and method == "POST":
            return _MESSAGES
        if rest == "/v1/models" and method == "GET":
            return _MODELS
        return None

    def api_key(self, headers: Headers, query: bytes) -> str | None:
        key = headers.get(b"x-api-key")
        return key.decode("latin-1") if key else None

    def parse(self, body: JSON, route: Route, headers: Headers) -> Parsed:
        if not headers.get(b"anthropic-version"):
            raise FarmError("invalid", "anthropic-version: header is required")
        model = model_field(body)
        if body.get("stream"):
            raise FarmError("invalid", "stream: streaming is not simulated by the farm", param="stream")
        max_tokens = int_field(body, "max_tokens")
        if max_tokens is None:
            raise FarmError("invalid", "max_tokens: Field required", param="max_tokens")
        texts: list[str] = []
        n_messages = 0
        system = body.get("system")
        if system:
            text_parts(system, "system", texts)
            n_messages += 1
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise FarmError("invalid", "messages: a non-empty list is required", param="messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise FarmError("invalid", f"messages.{i}.role: must be 'user' or 'assistant'", param="messages")
            text_parts(message.get("content"), f"messages.{i}.content", texts)
        return Parsed(model, texts, n_messages + len(messages), max_tokens)

    def success(self, parsed: Parsed, reply: Reply, prompt_tokens: int, serial: str, created: int) -> JSON:
        return {
            "id": "msg_" + serial,
            "type": "message",
            "role": "assistant",
            "model": parsed.model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": "max_tokens" if reply.truncated else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": reply.tokens},
        }

    def error(self, err: FarmError) -> tuple[int, JSON]:
        status, kind = _ERRORS[err.kind]
        message = err.message
        if err.kind == "context_length":
            message = f"prompt is too long: {err.requested} tokens > {err.limit} maximum"
        return status, {"type": "error", "error": {"type": kind, "message": message}}

    def limit_headers(self, verdict: Verdict, now: float) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        if verdict.requests is not None:
            headers += _budget_headers(verdict.requests, b"requests", now)
        if verdict.tokens is not None:
            headers += _budget_headers(verdict.tokens, b"tokens", now)
        return headers

    def models(self, names: list[str], owner: str, created: int) -> JSON:
        stamp = rfc3339(created)
        data = [{"type": "model", "id": n, "display_name": n, "created_at": stamp} for n in names]
        return {
            "data": data,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
