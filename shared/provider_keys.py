"""BYOK: a team's (or one router key's) own provider keys, stored encrypted with `SecretBox`.

The plaintext exists in three places only: the `add` call that receives it (from a prompt, stdin or an
environment variable — never a command-line argument), the worker's in-memory keyring that decrypts it once
to call the provider (`worker.credentials`), and the provider's request. Listings show the id, label and a
12-hex-digit SHA-256 fingerprint; the ledger records `byok:<id>`.

Removing a key wipes its ciphertext but keeps the row, so ledger references (`byok:<id>`) still resolve.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import Connection, insert, select, update

from shared.crypto import SecretBox
from shared.errors import InputError
from shared.ids import new_id
from shared.store import Store
from shared.store.queries import Query
from shared.store.writer import Deltas
from shared.tables_keys import ProviderKey, RouterKey
from shared.timeutil import utcnow

provider_keys = ProviderKey.__table__  # type: ignore[attr-defined]
api_keys = RouterKey.__table__  # type: ignore[attr-defined]

OwnerKind = Literal["key", "team"]
OWNER_KINDS: tuple[str, ...] = get_args(OwnerKind)


def fingerprint(secret: str) -> str:
    """Tells keys apart (and matches the farm's record of which key called it); reveals nothing usable."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def credential_ref(provider_key_id: str) -> str:
    return f"byok:{provider_key_id}"


@dataclass(frozen=True, slots=True)
class ProviderKeyInfo:
    """A stored provider key, without its secret."""

    id: str
    provider: str
    owner_kind: str
    owner: str
    label: str
    fingerprint: str
    created_at: datetime
    disabled: bool
    removed_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> ProviderKeyInfo:
        return cls(
            id=row["id"],
            provider=row["provider"],
            owner_kind=row["owner_kind"],
            owner=row["owner"],
            label=row["label"],
            fingerprint=row["fingerprint"],
            created_at=row["created_at"],
            disabled=row["disabled"],
            removed_at=row["removed_at"],
        )

    @property
    def ref(self) -> str:
        return credential_ref(self.id)


@dataclass(frozen=True, slots=True)
class SealedProviderKey:
    """What the worker's keyring loads: the ciphertext, decrypted only when first used."""

    id: str
    provider: str
    owner_kind: str
    owner: str
    secret_enc: str = ""

    def __repr__(self) -> str:
        return f"SealedProviderKey(id={self.id!r}, provider={self.provider!r}, {self.owner_kind}={self.owner!r})"


def active_provider_keys() -> Query:
    """Query → list[SealedProviderKey]: every usable (not disabled, not removed) provider key, oldest first."""

    def q(conn: Connection) -> list[SealedProviderKey]:
        rows = conn.execute(
            select(
                provider_keys.c.id,
                provider_keys.c.provider,
                provider_keys.c.owner_kind,
                provider_keys.c.owner,
                provider_keys.c.secret_enc,
            )
            .where(provider_keys.c.disabled.is_(False), provider_keys.c.secret_enc.is_not(None))
            .order_by(provider_keys.c.created_at, provider_keys.c.id)
        ).all()
        return [SealedProviderKey(*r) for r in rows]

    return q


def key_teams() -> Query:
    """Query → {router key id: team} for keys with a team (the keyring's team fallback)."""

    def q(conn: Connection) -> dict[str, str]:
        rows = conn.execute(select(api_keys.c.id, api_keys.c.team).where(api_keys.c.team.is_not(None))).all()
        return {k: t for k, t in rows}

    return q


class ProviderKeyStore:
    def __init__(self, store: Store, box: SecretBox | None = None) -> None:
        self.store = store
        self.box = box
        """Needed to add keys only: reading and removing never decrypt."""

    async def add(
        self, provider: str, owner_kind: str, owner: str, secret: str, *, label: str = "", now: datetime | None = None
    ) -> ProviderKeyInfo:
        secret = secret.strip()
        if self.box is None:
            raise ValueError("adding a provider key needs the master key (SecretBox)")
        if not secret:
            raise InputError("the provider key is empty", code="invalid_provider_key")
        if owner_kind not in OWNER_KINDS:
            raise InputError(f"owner must be one of {', '.join(OWNER_KINDS)}", code="invalid_provider_key")
        if not owner.strip():
            raise InputError("the owner (team or router key id) is empty", code="invalid_provider_key")
        if owner_kind == "key":

            def exists(conn: Connection) -> bool:
                return conn.execute(select(api_keys.c.id).where(api_keys.c.id == owner)).first() is not None

            if not await self.store.read(exists):
                raise InputError(f"no router key {owner}", code="invalid_provider_key")
        pvk_id = new_id("pvk")
        row = {
            "id": pvk_id,
            "provider": provider,
            "owner_kind": owner_kind,
            "owner": owner,
            "label": label,
            "secret_enc": self.box.encrypt(secret),
            "fingerprint": fingerprint(secret),
            "created_at": now or utcnow(),
            "disabled": False,
        }

        def op(conn: Connection, deltas: Deltas) -> None:
            conn.execute(insert(provider_keys), row)

        await self.store.write_direct(op)
        info = await self.get(pvk_id)
        assert info is not None
        return info

    async def get(self, provider_key_id: str) -> ProviderKeyInfo | None:
        def q(conn: Connection) -> ProviderKeyInfo | None:
            row = conn.execute(select(provider_keys).where(provider_keys.c.id == provider_key_id)).mappings().first()
            return None if row is None else ProviderKeyInfo.from_row(row)

        return await self.store.read(q)

    async def list(
        self,
        *,
        provider: str | None = None,
        owner_kind: str | None = None,
        owner: str | None = None,
        include_removed: bool = False,
    ) -> list[ProviderKeyInfo]:
        def q(conn: Connection) -> list[ProviderKeyInfo]:
            stmt = select(provider_keys)
            if provider is not None:
                stmt = stmt.where(provider_keys.c.provider == provider)
            if owner_kind is not None:
                stmt = stmt.where(provider_keys.c.owner_kind == owner_kind)
            if owner is not None:
                stmt = stmt.where(provider_keys.c.owner == owner)
            if not include_removed:
                stmt = stmt.where(provider_keys.c.removed_at.is_(None))
            rows = conn.execute(stmt.order_by(provider_keys.c.created_at, provider_keys.c.id)).mappings()
            return [ProviderKeyInfo.from_row(r) for r in rows]

        return await self.store.read(q)

    async def remove(self, provider_key_id: str, now: datetime | None = None) -> bool:
        """Wipe the key's ciphertext and mark it removed. False when there is no such (unremoved) key."""
        values = {"secret_enc": None, "disabled": True, "removed_at": now or utcnow()}

        def op(conn: Connection, deltas: Deltas) -> int:
            return conn.execute(
                update(provider_keys)
                .where(provider_keys.c.id == provider_key_id, provider_keys.c.removed_at.is_(None))
                .values(**values)
            ).rowcount

        return bool(await self.store.write_direct(op))

    async def set_disabled(self, provider_key_id: str, disabled: bool) -> bool:
        def op(conn: Connection, deltas: Deltas) -> int:
            return conn.execute(
                update(provider_keys)
                .where(provider_keys.c.id == provider_key_id, provider_keys.c.removed_at.is_(None))
                .values(disabled=disabled)
            ).rowcount

        return bool(await self.store.write_direct(op))
