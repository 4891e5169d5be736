"""Who is calling: the seam between the gateway (and CLI) and router API keys.

A `Principal` is what a bearer token resolves to. `Authenticator` implementations: `StaticAdminToken`
(bootstrap: one admin token from `ROUTEYARD_ADMIN_TOKEN`, so a deployment is usable before any key exists)
and the key store's authenticator (router API keys, stored as hashes). Tenancy follows `tenant`: a principal
sees only jobs, batches and files whose `api_key_id` belongs to its tenant; admins see everything.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str | None
    """The router API key's id (recorded on every job it submits); None for the bootstrap admin token."""
    name: str
    admin: bool = False
    team: str | None = None
    project: str | None = None
    environment: str | None = None
    labels: frozenset[str] = field(default_factory=frozenset)

    @property
    def tenant(self) -> str | None:
        """Scope of visibility: the key itself (None = admin scope, sees all)."""
        return None if self.admin else self.key_id


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Principal | None:
        """The principal for a bearer token, or None when it is unknown, disabled or expired."""
        ...


class StaticAdminToken:
    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise ValueError("ROUTEYARD_ADMIN_TOKEN must be at least 16 characters")
        self._token = token

    async def authenticate(self, token: str) -> Principal | None:
        if hmac.compare_digest(token.encode(), self._token.encode()):
            return Principal(key_id=None, name="admin (bootstrap token)", admin=True)
        return None


class Chain:
    """Try authenticators in order."""

    def __init__(self, *authenticators: Authenticator) -> None:
        self.authenticators = authenticators

    async def authenticate(self, token: str) -> Principal | None:
        for a in self.authenticators:
            p = await a.authenticate(token)
            if p is not None:
                return p
        return None
