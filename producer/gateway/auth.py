"""Bearer authentication through the `Authenticator` seam (`shared.auth`), and tenancy.

A principal sees only what its tenant owns: batches, jobs and files whose `api_key_id` is its tenant.
Anything else answers 404, exactly as an id that does not exist — a 403 would confirm the id is real.
Admin principals see everything and reach the admin routes.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from producer.gateway.errors import ApiError
from shared.auth import Authenticator, Chain, Principal, StaticAdminToken
from shared.keys import KeyAuthenticator
from shared.store import Store

bearer = HTTPBearer(auto_error=False, description="A router API key, or the bootstrap ROUTEYARD_ADMIN_TOKEN.")


async def principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise ApiError(
            401,
            "You didn't provide an API key: send it as 'Authorization: Bearer KEY'.",
            code="missing_api_key",
            type_="invalid_request_error",
        )
    authenticator: Authenticator = request.app.state.authenticator
    p = await authenticator.authenticate(credentials.credentials)
    if p is None:
        # never echo the token, not even in part
        raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key", type_="invalid_request_error")
    return p


async def require_admin(p: Annotated[Principal, Depends(principal)]) -> Principal:
    if not p.admin:
        raise ApiError(403, "This endpoint needs an admin key.", code="forbidden", type_="permission_error")
    return p


def can_see(p: Principal, owner_key_id: str | None) -> bool:
    """Tenancy in one place: admins see all; others what their tenant owns."""
    if p.admin:
        return True
    return p.tenant is not None and owner_key_id == p.tenant


def default_authenticator(store: Store | None = None) -> Authenticator | None:
    """What `routeyard api` authenticates with: router API keys from the key store (`routeyard keys create`),
    then the bootstrap admin token from ROUTEYARD_ADMIN_TOKEN, if set."""
    chain: list[Authenticator] = []
    if store is not None:
        chain.append(KeyAuthenticator(store))
    token = os.environ.get("ROUTEYARD_ADMIN_TOKEN")
    if token:
        chain.append(StaticAdminToken(token))
    if not chain:
        return None
    return chain[0] if len(chain) == 1 else Chain(*chain)
