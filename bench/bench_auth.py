"""An authenticator for benchmarks: one admin token."""

from __future__ import annotations

from shared.auth import Principal

ADMIN = "bench-admin-token-0123456789"


class Auth:
    async def authenticate(self, token: str) -> Principal | None:
        return Principal(key_id=None, name="bench", admin=True) if token == ADMIN else None
