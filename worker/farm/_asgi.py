"""The few raw ASGI moves the farm needs, kept lean because they run on every request."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_JSON_TYPE = (b"content-type", b"application/json")


def dumps(obj: object) -> bytes:
    return _ENCODER.encode(obj).encode()


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def wait_disconnect(receive: Receive) -> None:
    """Return once the client has gone away (after the body has been read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_json(send: Send, status: int, obj: object, headers: RawHeaders | None = None) -> None:
    payload = dumps(obj)
    response_headers = [_JSON_TYPE, (b"content-length", str(len(payload)).encode())]
    if headers:
        response_headers += headers
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": payload})


async def lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: acknowledge both so servers that run lifespan are content."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
