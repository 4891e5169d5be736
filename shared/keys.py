"""Router API keys: who may submit, with what limits, and what they may ask for.

A token looks like `ry_live_<id><secret>` (`ry_test_` for dev and staging keys): the key's id (26
characters) then 43 random base62 characters (256 bits). It is shown once, at creation or rotation, and
stored only as its SHA-256. A fast hash is the right tool here, unlike for passwords: a password is guessable
and needs a slow, salted hash to make guessing expensive, but a 256-bit random token cannot be guessed at any
speed, and a slow hash would cost every authenticated request milliseconds of CPU. Lookup is by the id
embedded in the token (one primary-key read), then the hashes are compared in constant time.

The shape matches `shared.redaction`'s pattern (`ry_(live|test)_…`), so a token that strays into a log line
is masked even where nobody told the redactor its value.

Refusals have stable codes and HTTP statuses (`REFUSALS`), so the gateway and the client speak alike:
a key over its spending limit is `402 key_limit_exceeded` (payment required: the key has run out of
credit *for this period*; the error says when it resets), a disabled key or a forbidden model/class/provider
is `403`, and an unknown or expired token is `401`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from sqlalchemy import Connection, func, insert, select, update

from shared.auth import Principal
from shared.errors import InputError, RouteyardError
from shared.ids import new_id
from shared.money import MAX_USD, fmt_usd
from shared.periods import LIMIT_RESETS, LimitReset
from shared.store import Store
from shared.store.writer import Deltas
from shared.tables_keys import RouterKey
from shared.timeutil import utcnow

api_keys = RouterKey.__table__  # type: ignore[attr-defined]

Environment = Literal["dev", "staging", "prod"]
ENVIRONMENTS: tuple[str, ...] = get_args(Environment)
_ID_BODY = 26
_SECRET_LEN = 43
_BASE62 = string.ascii_letters + string.digits


# ---------------------------------------------------------------------------------------------- refusals
REFUSALS: dict[str, int] = {
    "invalid_api_key": 401,
    "key_expired": 401,
    "key_disabled": 403,
    "key_limit_exceeded": 402,
    "class_not_allowed": 403,
    "model_not_allowed": 403,
    "provider_not_allowed": 403,
}
"""Refusal code → HTTP status the gateway answers with."""


class KeyRefused(RouteyardError):
    """A submission refused because of its router key. `code` is stable (see `REFUSALS`); the message names
    the limit, the spend and the reset time when the limit is the reason."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        key_id: str | None = None,
        limit: Decimal | None = None,
        spent: Decimal | None = None,
        reset_at: datetime | None = None,
    ) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.http_status = REFUSALS.get(code, 403)
        self.key_id = key_id
        self.limit = limit
        self.spent = spent
        self.reset_at = reset_at

    def to_json(self) -> dict[str, Any]:
        """The error body the gateway returns (OpenAI-shaped `error` object plus the numbers)."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "key_id": self.key_id,
                "limit": None if self.limit is None else str(self.limit),
                "spent": None if self.spent is None else str(self.spent),
                "reset_at": None if self.reset_at is None else self.reset_at.isoformat(),
            }
        }


# ---------------------------------------------------------------------------------------------- tokens
def _prefix(environment: str) -> str:
    return "ry_live_" if environment == "prod" else "ry_test_"


def new_key_id() -> str:
    return new_id("key")


def new_token(key_id: str, environment: str) -> str:
    body = key_id.removeprefix("key_")
    if len(body) != _ID_BODY or not body.isalnum():
        raise ValueError("not a router key id")
    return _prefix(environment) + body + "".join(secrets.choice(_BASE62) for _ in range(_SECRET_LEN))


def parse_token(token: str) -> str | None:
    """The key id a token names, or None when it is not shaped like a router key token."""
    if not token.startswith(("ry_live_", "ry_test_")):
        return None
    rest = token[len("ry_live_") :]
    if len(rest) != _ID_BODY + _SECRET_LEN or not rest.isascii() or not rest.isalnum():
        return None
    return "key_" + rest[:_ID_BODY]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- the key
@dataclass(frozen=True, slots=True)
class ApiKey:
    """A router key as the rest of the system sees it (never its hash or secret)."""

    id: str
    name: str
    environment: str
    team: str | None
    project: str | None
    labels: frozenset[str]
    expires_at: datetime | None
    allowed_classes: frozenset[str] | None
    allowed_models: frozenset[str] | None
    allowed_providers: frozenset[str] | None
    limit: Decimal | None
    """USD per period; None = unlimited."""
    limit_reset: LimitReset
    include_byok_in_limit: bool
    disabled: bool
    admin: bool
    created_at: datetime
    rotated_at: datetime | None = None
    disabled_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> ApiKey:
        def opt(v: list[str] | None) -> frozenset[str] | None:
            return None if v is None else frozenset(v)

        return cls(
            id=row["id"],
            name=row["name"],
            environment=row["environment"],
            team=row["team"],
            project=row["project"],
            labels=frozenset(row["labels"] or ()),
            expires_at=row["expires_at"],
            allowed_classes=opt(row["allowed_classes"]),
            allowed_models=opt(row["allowed_models"]),
            allowed_providers=opt(row["allowed_providers"]),
            limit=row["credit_limit"],
            limit_reset=row["limit_reset"],
            include_byok_in_limit=row["include_byok_in_limit"],
            disabled=row["disabled"],
            admin=row["admin"],
            created_at=row["created_at"],
            rotated_at=row["rotated_at"],
            disabled_at=row["disabled_at"],
        )

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def refusal(self, now: datetime) -> KeyRefused | None:
        """Why this key may not be used at all right now (disabled, expired), or None."""
        if self.disabled:
            return KeyRefused("key_disabled", f"key {self.id} ({self.name}) is disabled", key_id=self.id)
        if self.expires_at is not None and self.expired(now):
            return KeyRefused(
                "key_expired", f"key {self.id} ({self.name}) expired at {self.expires_at.isoformat()}", key_id=self.id
            )
        return None

    def principal(self) -> Principal:
        return Principal(
            key_id=self.id,
            name=self.name,
            admin=self.admin,
            team=self.team,
            project=self.project,
            environment=self.environment,
            labels=self.labels,
        )

    def describe_limit(self) -> str:
        if self.limit is None:
            return "unlimited"
        per = {"daily": "per day", "weekly": "per week", "monthly": "per month", "none": "in total"}
        return f"{fmt_usd(self.limit, 2)} {per.get(self.limit_reset, self.limit_reset)}"


def limit_refusal(
    key: ApiKey, spent: Decimal, period_end: datetime | None, *, unpriced_calls: int = 0
) -> KeyRefused | None:
    """`key_limit_exceeded` when `spent` is at or over the key's limit."""
    if key.limit is None or spent < key.limit:
        return None
    resets = (
        f"it resets at {period_end.isoformat().replace('+00:00', 'Z')}"
        if period_end is not None
        else "it does not reset (limit_reset = none): raise the limit or use another key"
    )
    unknown = f" plus {unpriced_calls} call(s) of unknown price" if unpriced_calls else ""
    return KeyRefused(
        "key_limit_exceeded",
        f"key {key.id} ({key.name}) has reached its spending limit of {key.describe_limit()}: "
        f"spent {fmt_usd(spent, 6)}{unknown} this period; {resets}",
        key_id=key.id,
        limit=key.limit,
        spent=spent,
        reset_at=period_end,
    )


# ---------------------------------------------------------------------------------------------- store access
def _listed(values: Iterable[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = sorted({v.strip() for v in values if v.strip()})
    return out


def get_key(key_id: str) -> Callable[[Connection], ApiKey | None]:
    def q(conn: Connection) -> ApiKey | None:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return None if row is None else ApiKey.from_row(row)

    return q


def list_keys(
    *, team: str | None = None, environment: str | None = None, include_disabled: bool = True
) -> Callable[[Connection], list[ApiKey]]:
    def q(conn: Connection) -> list[ApiKey]:
        stmt = select(api_keys)
        if team is not None:
            stmt = stmt.where(api_keys.c.team == team)
        if environment is not None:
            stmt = stmt.where(api_keys.c.environment == environment)
        if not include_disabled:
            stmt = stmt.where(api_keys.c.disabled.is_(False))
        return [ApiKey.from_row(r) for r in conn.execute(stmt.order_by(api_keys.c.id)).mappings()]

    return q


UPDATABLE: dict[str, str] = {
    "name": "name",
    "team": "team",
    "project": "project",
    "labels": "labels",
    "expires_at": "expires_at",
    "allowed_classes": "allowed_classes",
    "allowed_models": "allowed_models",
    "allowed_providers": "allowed_providers",
    "limit": "credit_limit",
    "limit_reset": "limit_reset",
    "include_byok_in_limit": "include_byok_in_limit",
    "disabled": "disabled",
}
"""What `KeyStore.update` may change, and the column each lives in. Environment and admin scope are fixed at
creation: the token's prefix names the environment, and scope changes deserve a new key."""


def _check(
    *,
    name: str | None = None,
    environment: str | None = None,
    limit_reset: str | None = None,
    limit: Decimal | None = None,
    expires_at: datetime | None = None,
) -> None:
    if name is not None and not name.strip():
        raise InputError("a key needs a name", code="invalid_key")
    if environment is not None and environment not in ENVIRONMENTS:
        raise InputError(f"environment must be one of {', '.join(ENVIRONMENTS)}", code="invalid_key")
    if limit_reset is not None and limit_reset not in LIMIT_RESETS:
        raise InputError(f"limit reset must be one of {', '.join(LIMIT_RESETS)}", code="invalid_key")
    if limit is not None and not (limit.is_finite() and 0 <= limit <= MAX_USD):
        raise InputError(f"limit must be between $0 and ${MAX_USD:,}", code="invalid_key")
    if expires_at is not None and expires_at.tzinfo is None:
        raise InputError("expiry must carry a timezone", code="invalid_key")


class KeyStore:
    """Create, read, change, disable and rotate router keys. Tokens are returned once and never stored."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(
        self,
        name: str,
        *,
        environment: str = "dev",
        team: str | None = None,
        project: str | None = None,
        labels: Iterable[str] = (),
        expires_at: datetime | None = None,
        allowed_classes: Iterable[str] | None = None,
        allowed_models: Iterable[str] | None = None,
        allowed_providers: Iterable[str] | None = None,
        limit: Decimal | None = None,
        limit_reset: str = "none",
        include_byok_in_limit: bool = False,
        admin: bool = False,
        now: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """The new key and its token (shown once)."""
        _check(name=name, environment=environment, limit_reset=limit_reset, limit=limit, expires_at=expires_at)
        now = now or utcnow()
        key_id = new_key_id()
        token = new_token(key_id, environment)
        row = {
            "id": key_id,
            "name": name.strip(),
            "environment": environment,
            "team": team,
            "project": project,
            "labels": _listed(labels) or [],
            "expires_at": expires_at,
            "allowed_classes": _listed(allowed_classes),
            "allowed_models": _listed(allowed_models),
            "allowed_providers": _listed(allowed_providers),
            "credit_limit": limit,
            "limit_reset": limit_reset,
            "include_byok_in_limit": include_byok_in_limit,
            "disabled": False,
            "admin": admin,
            "secret_hash": hash_token(token),
            "created_at": now,
        }

        def op(conn: Connection, deltas: Deltas) -> None:
            conn.execute(insert(api_keys), row)

        await self.store.write_direct(op)
        key = await self.get(key_id)
        assert key is not None
        return key, token

    async def get(self, key_id: str) -> ApiKey | None:
        return await self.store.read(get_key(key_id))

    async def list(
        self, *, team: str | None = None, environment: str | None = None, include_disabled: bool = True
    ) -> list[ApiKey]:
        return await self.store.read(list_keys(team=team, environment=environment, include_disabled=include_disabled))

    async def update(self, key_id: str, changes: dict[str, Any], now: datetime | None = None) -> ApiKey | None:
        """Change a key's settings (any of `UPDATABLE`; None clears an optional one). Jobs already submitted
        keep the team, project and environment they were recorded with. None when the key is unknown."""
        unknown = sorted(set(changes) - set(UPDATABLE))
        if unknown:
            raise InputError(f"cannot change {', '.join(unknown)} of a key", code="invalid_key")
        cleared = sorted(
            k
            for k in ("name", "limit_reset", "include_byok_in_limit", "disabled")
            if k in changes and changes[k] is None
        )
        if cleared:
            raise InputError(f"{', '.join(cleared)} cannot be null", code="invalid_key")
        _check(**{k: v for k, v in changes.items() if k in ("name", "limit_reset", "limit", "expires_at")})
        values = {UPDATABLE[k]: v for k, v in changes.items() if k != "disabled"}
        for k in ("labels", "allowed_classes", "allowed_models", "allowed_providers"):
            if k in changes:
                values[k] = _listed(changes[k]) or ([] if k == "labels" else None)
        if "name" in changes:
            values["name"] = changes["name"].strip()
        if "disabled" in changes:
            values["disabled"] = bool(changes["disabled"])
            values["disabled_at"] = (now or utcnow()) if changes["disabled"] else None

        def op(conn: Connection, deltas: Deltas) -> int:
            if not values:
                return int(
                    conn.execute(select(func.count()).select_from(api_keys).where(api_keys.c.id == key_id)).scalar()
                    or 0
                )
            return conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values)).rowcount

        if not await self.store.write_direct(op):
            return None
        return await self.get(key_id)

    async def set_disabled(self, key_id: str, disabled: bool, now: datetime | None = None) -> ApiKey | None:
        values = {"disabled": disabled, "disabled_at": (now or utcnow()) if disabled else None}

        def op(conn: Connection, deltas: Deltas) -> int:
            return conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values)).rowcount

        if not await self.store.write_direct(op):
            return None
        return await self.get(key_id)

    async def rotate(self, key_id: str, now: datetime | None = None) -> tuple[ApiKey, str] | None:
        """A new secret for the key; the old token stops working at once. None when the key is unknown."""
        key = await self.get(key_id)
        if key is None:
            return None
        token = new_token(key_id, key.environment)
        values = {"secret_hash": hash_token(token), "rotated_at": now or utcnow()}

        def op(conn: Connection, deltas: Deltas) -> None:
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))

        await self.store.write_direct(op)
        rotated = await self.get(key_id)
        assert rotated is not None
        return rotated, token

    async def verify(self, token: str) -> ApiKey | None:
        """The key a token belongs to (whatever its state), or None when the token is not a valid one."""
        key_id = parse_token(token)
        presented = hash_token(token)
        if key_id is None:
            return None

        def q(conn: Connection) -> tuple[str, ApiKey] | None:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
            return None if row is None else (row["secret_hash"], ApiKey.from_row(row))

        found = await self.store.read(q)
        if found is None:
            return None
        stored, key = found
        return key if hmac.compare_digest(presented, stored) else None


class KeyAuthenticator:
    """`shared.auth.Authenticator` over the key store: a valid, enabled, unexpired token → its Principal."""

    def __init__(self, store: Store, now: Callable[[], datetime] = utcnow) -> None:
        self.keys = KeyStore(store)
        self._now = now

    async def authenticate(self, token: str) -> Principal | None:
        key = await self.keys.verify(token)
        if key is None or key.refusal(self._now()) is not None:
            return None
        return key.principal()
