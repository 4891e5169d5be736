"""OpenAI chat completions: `POST /v1/chat/completions` and `GET /v1/models`.

Also the wire of every OpenAI-compatible host the farm simulates (DeepInfra, Together, Groq, ...).
"""

from __future__ import annotations

from worker.farm.limits import Budget, Verdict
from worker.farm.tokens import Reply
from worker.farm.wires.base import (
    JSON,
    FarmError,
    Headers,
    Parsed,
    Route,
    bearer,
    int_field,
    model_field,
    text_parts,
)

_CHAT = Route("generate")
_MODELS = Route("models")

# kind -> (status, error type, code, default message)
_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "auth": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    "not_found": (404, "invalid_request_error", "unknown_url", "Invalid URL."),
    "model_not_found": (404, "invalid_request_error", "model_not_found", "The model does not exist."),
    "invalid": (400, "invalid_request_error", None, "Invalid request."),
    "context_length": (400, "invalid_request_error", "context_length_exceeded", "Context length exceeded."),
    "rate_limit": (429, "requests", "rate_limit_exceeded", "Rate limit reached."),
    "server": (500, "server_error", None, "The server had an error while processing your request."),
    "overloaded": (503, "server_error", None, "The engine is currently overloaded, please try again later."),
    "timeout": (504, "timeout", None, "Request timed out."),
}


def go_duration(seconds: float) -> str:
    """OpenAI's reset format (Go's `time.Duration` text): `120ms`, `1s`, `8.64s`, `6m0s`, `1h2m3s`."""
    if seconds <= 0.0:
        return "0s"
    if seconds < 1.0:
        return f"{round(seconds * 1000)}ms"
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours or minutes:
        text = f"{int(minutes)}m{text}"
    if hours:
        text = f"{int(hours)}h{text}"
    return text


def _budget_headers(budget: Budget, unit: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ratelimit-limit-" + unit, str(budget.limit).encode()),
        (b"x-ratelimit-remaining-" + unit, str(budget.remaining).encode()),
        (b"x-ratelimit-reset-" + unit, go_duration(budget.reset_s).encode()),
    ]


class OpenAIWire:
    name = "openai"
    request_id_header = b"x-request-id"

    def route(self, method: str, rest: str) -> Route | None:
        if rest == "/v1/chat/completions" and method == "POST":
            return _CHAT
        if rest == "/v1/models" and method == "GET":
            return _MODELS
        return None

    def api_key(self, headers: Headers, query: bytes) -> str | None:
        return bearer(headers)

    def parse(self, body: JSON, route: Route, headers: Headers) -> Parsed:
        model = model_field(body)
        if body.get("stream"):
            raise FarmError("invalid", "stream: streaming is not simulated by the farm", param="stream")
        if body.get("n") not in (None, 1):
            raise FarmError("invalid", "n: only n=1 is simulated by the farm", param="n")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise FarmError("invalid", "messages: a non-empty list is required", param="messages")
        texts: list[str] = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise FarmError("invalid", f"messages[{i}]: an object with a role is required", param="messages")
            text_parts(message.get("content"), f"messages[{i}].content", texts)
        max_tokens = int_field(body, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = int_field(body, "max_tokens")
        return Parsed(model, texts, len(messages), max_tokens)

    def success(self, parsed: Parsed, reply: Reply, prompt_tokens: int, serial: str, created: int) -> JSON:
        return {
            "id": "chatcmpl-" + serial,
            "object": "chat.completion",
            "created": created,
            "model": parsed.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "length" if reply.truncated else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": reply.tokens,
                "total_tokens": prompt_tokens + reply.tokens,
            },
        }

    def error(self, err: FarmError) -> tuple[int, JSON]:
        status, kind, code, default = _ERRORS[err.kind]
        if err.kind == "rate_limit" and err.limit_type:
            kind = err.limit_type
        body = {"message": err.message or default, "type": kind, "param": err.param, "code": code}
        return status, {"error": body}

    def limit_headers(self, verdict: Verdict, now: float) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        if verdict.requests is not None:
            headers += _budget_headers(verdict.requests, b"requests")
        if verdict.tokens is not None:
            headers += _budget_headers(verdict.tokens, b"tokens")
        return headers

    def models(self, names: list[str], owner: str, created: int) -> JSON:
        data = [{"id": name, "object": "model", "created": created, "owned_by": owner} for name in names]
        return {"object": "list", "data": data}
