"""What a wire format is, to the farm: how to route, authenticate, parse, answer and fail.

The farm's request path is written once against `Wire`; each format is one module implementing it
(`openai.py`, `anthropic.py`, `gemini.py`). Failures travel as `FarmError`, whose `kind` is the farm's own
vocabulary; each wire maps a kind to its status code and error body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from worker.farm.limits import Verdict
from worker.farm.tokens import Reply

ErrorKind = Literal[
    "auth",  # 401
    "not_found",  # 404: unknown path
    "model_not_found",  # 404
    "invalid",  # 400: malformed JSON, missing or ill-typed fields
    "context_length",  # 400: prompt + max output above the model's window
    "rate_limit",  # 429
    "server",  # 500
    "overloaded",  # 503 (Anthropic: 529)
    "timeout",  # 504: a hang the client outlasted
]

Headers = dict[bytes, bytes]
JSON = dict[str, Any]


class FarmError(Exception):
    """A simulated failure, in the farm's vocabulary; the wire decides how it looks."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        param: str | None = None,
        limit_type: str | None = None,
        retry_after_s: float | None = None,
        limit: int | None = None,
        requested: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.param = param
        self.limit_type = limit_type  # "requests" | "tokens" for limiter refusals
        self.retry_after_s = retry_after_s
        self.limit = limit  # for "context_length": the window, and the tokens asked for
        self.requested = requested


@dataclass(frozen=True, slots=True)
class Route:
    endpoint: Literal["generate", "models"]
    model: str | None = None  # Gemini carries the model in the path


@dataclass(frozen=True, slots=True)
class Parsed:
    """The part of a generation request the farm acts on, whatever the format."""

    model: str
    texts: list[str]  # every text part of every message, system prompt included
    n_messages: int
    max_tokens: int | None


class Wire(Protocol):
    name: str
    request_id_header: bytes

    def route(self, method: str, rest: str) -> Route | None:
        """The endpoint at `rest` (the path after `/{provider}`), or None if this format has none there."""
        ...

    def api_key(self, headers: Headers, query: bytes) -> str | None: ...

    def parse(self, body: JSON, route: Route, headers: Headers) -> Parsed:
        """Validate a generation request (raises `FarmError("invalid")`)."""
        ...

    def success(self, parsed: Parsed, reply: Reply, prompt_tokens: int, serial: str, created: int) -> JSON: ...

    def error(self, err: FarmError) -> tuple[int, JSON]: ...

    def limit_headers(self, verdict: Verdict, now: float) -> list[tuple[bytes, bytes]]: ...

    def models(self, names: list[str], owner: str, created: int) -> JSON: ...


def int_field(body: JSON, name: str, *, minimum: int = 1) -> int | None:
    """An optional integer field; bools and floats are rejected like the real APIs do."""
    value = body.get(name)
    if value is None:
        return None
    if type(value) is not int:
        raise FarmError("invalid", f"{name}: expected an integer", param=name)
    if value < minimum:
        raise FarmError("invalid", f"{name}: must be >= {minimum}", param=name)
    return value


def model_field(body: JSON) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise FarmError("invalid", "model: a non-empty string is required", param="model")
    return model


def bearer(headers: Headers) -> str | None:
    value = headers.get(b"authorization")
    if value is None or value[:7].lower() != b"bearer ":
        return None
    return value[7:].strip().decode("latin-1") or None


def text_parts(content: object, where: str, out: list[str], text_type: str = "text") -> None:
    """Append the text of a string or a list of content blocks; other block types carry no text."""
    if isinstance(content, str):
        out.append(content)
        return
    if content is None:
        return
    if not isinstance(content, list):
        raise FarmError("invalid", f"{where}: content must be a string or a list of blocks", param=where)
    for block in content:
        if not isinstance(block, dict):
            raise FarmError("invalid", f"{where}: each content block must be an object", param=where)
        if block.get("type") == text_type:
            text = block.get("text")
            if not isinstance(text, str):
                raise FarmError("invalid", f"{where}: a text block needs a string `text`", param=where)
            out.append(text)


def retry_headers(seconds: float) -> list[tuple[bytes, bytes]]:
    """`retry-after` in whole seconds (as HTTP wants, rounded up) and exact `retry-after-ms`."""
    ms = max(0, round(seconds * 1000))
    return [(b"retry-after", str(-(-ms // 1000)).encode()), (b"retry-after-ms", str(ms).encode())]
