"""Google Gemini: `POST /v1beta/models/{model}:generateContent` (and `GET /v1beta/models`).

The model travels in the path, the key in `x-goog-api-key` or `?key=`. Gemini sends no rate-limit headers,
so neither does the farm: a 429 carries `retry-after` and a `google.rpc.RetryInfo` detail instead.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from worker.farm.limits import Verdict
from worker.farm.tokens import Reply
from worker.farm.wires.base import JSON, FarmError, Headers, Parsed, Route, int_field

_PREFIX = "/v1beta/models/"
_METHOD = ":generateContent"
_MODELS = Route("models")

_ERRORS: dict[str, tuple[int, str]] = {
    "auth": (401, "UNAUTHENTICATED"),
    "not_found": (404, "NOT_FOUND"),
    "model_not_found": (404, "NOT_FOUND"),
    "invalid": (400, "INVALID_ARGUMENT"),
    "context_length": (400, "INVALID_ARGUMENT"),
    "rate_limit": (429, "RESOURCE_EXHAUSTED"),
    "server": (500, "INTERNAL"),
    "overloaded": (503, "UNAVAILABLE"),
    "timeout": (504, "DEADLINE_EXCEEDED"),
}


def _parts_text(content: object, where: str, out: list[str]) -> None:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        raise FarmError("invalid", f"{where}: an object with a `parts` list is required")
    for part in content["parts"]:
        if not isinstance(part, dict):
            raise FarmError("invalid", f"{where}.parts: each part must be an object")
        text = part.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise FarmError("invalid", f"{where}.parts: `text` must be a string")
            out.append(text)


class GeminiWire:
    name = "gemini"
    request_id_header = b"x-request-id"

    def route(self, method: str, rest: str) -> Route | None:
        if rest == "/v1beta/models" and method == "GET":
            return _MODELS
        if method == "POST" and rest.startswith(_PREFIX) and rest.endswith(_METHOD):
            model = rest[len(_PREFIX) : -len(_METHOD)]
            if model and "/" not in model:
                return Route("generate", model)
        return None

    def api_key(self, headers: Headers, query: bytes) -> str | None:
        key = headers.get(b"x-goog-api-key")
        if key:
            return key.decode("latin-1")
        if b"key=" in query:
            found = parse_qs(query.decode("latin-1")).get("key")
            if found and found[0]:
                return found[0]
        return None

    def parse(self, body: JSON, route: Route, headers: Headers) -> Parsed:
        assert route.model is not None  # route() only builds generate routes with a model
        texts: list[str] = []
        n_messages = 0
        system = body.get("systemInstruction")
        if system is not None:
            _parts_text(system, "systemInstruction", texts)
            n_messages += 1
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise FarmError("invalid", "contents: a non-empty list is required")
        for i, content in enumerate(contents):
            if isinstance(content, dict) and content.get("role") not in (None, "user", "model"):
                raise FarmError("invalid", f"contents[{i}].role: must be 'user' or 'model'")
            _parts_text(content, f"contents[{i}]", texts)
        config = body.get("generationConfig") or {}
        if not isinstance(config, dict):
            raise FarmError("invalid", "generationConfig: must be an object")
        max_tokens = int_field(config, "maxOutputTokens")
        return Parsed(route.model, texts, n_messages + len(contents), max_tokens)

    def success(self, parsed: Parsed, reply: Reply, prompt_tokens: int, serial: str, created: int) -> JSON:
        return {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": reply.text}]},
                    "finishReason": "MAX_TOKENS" if reply.truncated else "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": reply.tokens,
                "totalTokenCount": prompt_tokens + reply.tokens,
            },
            "modelVersion": parsed.model,
            "responseId": serial,
        }

    def error(self, err: FarmError) -> tuple[int, JSON]:
        status, code = _ERRORS[err.kind]
        message = err.message
        if err.kind == "context_length":
            message = (
                f"The input token count ({err.requested}) exceeds the maximum number of tokens allowed ({err.limit})."
            )
        body: JSON = {"code": status, "message": message, "status": code}
        if err.retry_after_s is not None:
            delay = f"{err.retry_after_s:.3f}".rstrip("0").rstrip(".") + "s"
            body["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
        return status, {"error": body}

    def limit_headers(self, verdict: Verdict, now: float) -> list[tuple[bytes, bytes]]:
        return []

    def models(self, names: list[str], owner: str, created: int) -> JSON:
        return {
            "models": [
                {"name": "models/" + n, "displayName": n, "supportedGenerationMethods": ["generateContent"]}
                for n in names
            ]
        }
