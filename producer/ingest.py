"""Reading job files: OpenAI Batch API lines and routeyard's plain lines, one JSON object a line.

    {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": ..., "messages": ...}}
    {"custom_id": "t7", "class": "simple", "prompt": "Classify: ..."}
    {"messages": [{"role": "user", "content": "..."}], "priority": "high"}

A bad line becomes a `LineError` with its line number and a code, and the rest of the file proceeds (the
caller decides whether one error rejects everything). Reading streams: memory does not grow with the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydantic import ValidationError

from shared.models import JobSpec

CHAT_URLS = ("/v1/chat/completions", "/chat/completions")
# OpenAI body fields that ask for nothing a batch job could honour differently; accepted and dropped
_HARMLESS = {"store", "service_tier", "stream_options", "prediction"}
MAX_LINE_BYTES = 8 * 1024 * 1024


@dataclass(slots=True, frozen=True)
class Line:
    line_no: int
    spec: JobSpec


@dataclass(slots=True, frozen=True)
class LineError:
    line_no: int
    code: str
    """invalid_utf8 | invalid_json | invalid_line | invalid_request | unknown_class | unknown_model |
    unknown_provider | no_route | duplicate_custom_id | too_long"""
    message: str
    custom_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line_no, "custom_id": self.custom_id, "code": self.code, "message": self.message}


def _pydantic_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _from_openai_line(obj: dict[str, Any], line_no: int) -> JobSpec | LineError:
    custom_id = obj.get("custom_id") if isinstance(obj.get("custom_id"), str) else None
    method = obj.get("method", "POST")
    url = obj.get("url")
    body = obj.get("body")
    if method != "POST":
        return LineError(line_no, "invalid_line", f"method must be POST, not {method!r}", custom_id)
    if url not in CHAT_URLS:
        return LineError(line_no, "invalid_line", f"url must be /v1/chat/completions, not {url!r}", custom_id)
    if not isinstance(body, dict):
        return LineError(line_no, "invalid_line", "body must be a JSON object", custom_id)
    body = dict(body)
    if body.pop("stream", False):
        return LineError(line_no, "invalid_request", "stream: true is not available in a batch", custom_id)
    if body.pop("n", 1) != 1:
        return LineError(line_no, "invalid_request", "n must be 1 (one completion a job)", custom_id)
    for key in _HARMLESS:
        body.pop(key, None)
    if "max_completion_tokens" in body:
        body.setdefault("max_tokens", body.pop("max_completion_tokens"))
    if "metadata" in obj:
        body.setdefault("metadata", obj["metadata"])
    extra = set(obj) - {"custom_id", "method", "url", "body", "metadata"}
    if extra:
        return LineError(line_no, "invalid_line", f"unknown field(s) {sorted(extra)}", custom_id)
    if custom_id is not None:
        body["custom_id"] = custom_id
    return _validate(body, line_no, custom_id)


def _validate(obj: dict[str, Any], line_no: int, custom_id: str | None) -> JobSpec | LineError:
    try:
        return JobSpec.model_validate(obj)
    except ValidationError as e:
        return LineError(line_no, "invalid_request", _pydantic_message(e), custom_id)


def parse_line(raw: bytes, line_no: int) -> JobSpec | LineError | None:
    """One line → a spec, an error, or None for a blank line."""
    if len(raw) > MAX_LINE_BYTES:
        return LineError(line_no, "too_long", f"line is {len(raw)} bytes; the limit is {MAX_LINE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return LineError(line_no, "invalid_utf8", f"not valid UTF-8 at byte {e.start}")
    text = text.strip().lstrip("\ufeff")
    if not text:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return LineError(line_no, "invalid_json", f"invalid JSON ({e.msg}, column {e.colno})")
    if not isinstance(obj, dict):
        return LineError(line_no, "invalid_line", "each line must be a JSON object")
    if "body" in obj or "url" in obj:
        return _from_openai_line(obj, line_no)
    custom_id = obj.get("custom_id") if isinstance(obj.get("custom_id"), str) else None
    return _validate(obj, line_no, custom_id)


def read_lines(stream: BinaryIO | Iterable[bytes]) -> Iterator[Line | LineError]:
    for line_no, raw in enumerate(stream, start=1):
        parsed = parse_line(raw, line_no)
        if parsed is None:
            continue
        if isinstance(parsed, LineError):
            yield parsed
        else:
            yield Line(line_no, parsed)
