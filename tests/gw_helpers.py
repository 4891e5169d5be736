"""Helpers for the gateway's tests: a fake authenticator with two tenants and an admin, a config whose
webhooks may reach loopback on a compressed schedule, and a tiny webhook receiver on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ry_helpers import TEST_CONFIG, free_port, make_config, wait_for_http

from shared.auth import Principal

ALICE, BOB, ADMIN = "tok-alice-0123456789", "tok-bob-0123456789", "tok-admin-0123456789"
WEBHOOK_CONFIG = (
    TEST_CONFIG
    + """
[webhooks]
allow_private_targets = true
schedule_s = [0, 0.2, 0.2]
jitter = 0.0
timeout_s = 5
"""
)


class FakeAuth:
    """Two tenants (router keys `key_alice`, `key_bob`) and an admin."""

    principals = {
        ALICE: Principal(key_id="key_alice", name="alice"),
        BOB: Principal(key_id="key_bob", name="bob"),
        ADMIN: Principal(key_id=None, name="admin", admin=True),
    }

    async def authenticate(self, token: str) -> Principal | None:
        return self.principals.get(token)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def webhook_config(**overrides: Any) -> Any:
    text = WEBHOOK_CONFIG
    for key, value in overrides.items():
        text = text.replace(f"\n{key} = ", f"\n{key} = {value}\n#", 1) if f"\n{key} = " in text else text
    return make_config(text)


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    path: str = "/hook"


@dataclass
class Receiver:
    """A webhook receiver: records every request; `answer` picks each response's status code."""

    url: str
    received: list[Received] = field(default_factory=list)
    answer: Callable[[int], int] = lambda n: 200
    in_flight: int = 0
    max_concurrent: int = 0

    async def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.received) < n:
            if loop.time() > deadline:
                raise TimeoutError(f"{len(self.received)} of {n} webhooks arrived")
            await asyncio.sleep(0.05)
        return self.received


@contextlib.contextmanager
def webhook_receiver(answer: Callable[[int], int] = lambda n: 200, delay_s: float = 0.0) -> Iterator[Receiver]:
    """Serve a receiver on a free loopback port from a thread; it takes `delay_s` to answer each POST and
    counts how many it held at once (`rec.max_concurrent`)."""
    import uvicorn

    port = free_port()
    rec = Receiver(url=f"http://127.0.0.1:{port}/hook", answer=answer)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if scope["method"] == "GET":
            status = 200
        else:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            rec.received.append(Received(body, headers, scope["path"]))
            status = rec.answer(len(rec.received))
            rec.in_flight += 1
            rec.max_concurrent = max(rec.max_concurrent, rec.in_flight)
            try:
                await asyncio.sleep(delay_s)
            finally:
                rec.in_flight -= 1
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_http(f"http://127.0.0.1:{port}/")
    try:
        yield rec
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def seed_tenant_keys(store: Any) -> None:
    """Give FakeAuth's two tenants real router-key rows (no limits), as `routeyard keys create` would: the
    Producer checks the submitting key against the key store."""
    from sqlalchemy import insert, select

    from shared.tables_keys import RouterKey
    from shared.timeutil import utcnow

    keys = RouterKey.__table__  # type: ignore[attr-defined]

    def op(conn: Any, deltas: Any) -> None:
        have = set(conn.execute(select(keys.c.id)).scalars())
        rows = [
            {"id": key_id, "name": name, "labels": [], "secret_hash": "0" * 64, "created_at": utcnow()}
            for key_id, name in (("key_alice", "alice"), ("key_bob", "bob"))
            if key_id not in have
        ]
        if rows:
            conn.execute(insert(keys), rows)

    store.write_sync(op)
