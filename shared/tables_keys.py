"""Tables of keys, BYOK provider keys and governance denials.

- `api_keys`: router API keys. The secret is never stored: only its SHA-256 (see `shared.keys`).
- `provider_keys`: a team's or a router key's own provider keys (BYOK), encrypted with `SecretBox`.
  Columns holding ciphertext say so in their `info` (`ENCRYPTED`), which is how
  `routeyard secrets rotate-master-key` finds every one of them (`shared.secret_columns`).
- `policy_denials`: the audit of what governance refused — endpoints excluded by policy for a key's jobs,
  and submissions refused. One row per (day, key, source, endpoint, code) counting `occurrences`, so a
  100k-job batch whose jobs all exclude the same endpoint bumps one counter (in a few batched upserts)
  instead of writing 100k rows.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, Column, Date, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.money import Money
from shared.timeutil import UTCDateTime

ENCRYPTED = {"encrypted": "fernet"}
"""`Column(..., info=ENCRYPTED)`: the column holds `SecretBox` ciphertext and is re-encrypted on rotation."""


def _utc(nullable: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable)


class RouterKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=128)
    environment: str = Field(default="dev", max_length=16, index=True)
    team: str | None = Field(default=None, max_length=64, index=True)
    project: str | None = Field(default=None, max_length=64, index=True)
    labels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    expires_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    allowed_classes: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """None = every class."""
    allowed_models: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    allowed_providers: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    credit_limit: Decimal | None = Field(default=None, sa_column=Column(Money(), nullable=True))
    """Spending limit in USD per `limit_reset` period; None = unlimited."""
    limit_reset: str = Field(default="none", max_length=16)
    include_byok_in_limit: bool = False
    disabled: bool = False
    disabled_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    admin: bool = False
    secret_hash: str = Field(max_length=64)
    """Hex SHA-256 of the whole token; compared in constant time."""
    created_at: datetime = Field(sa_column=_utc())
    rotated_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class ProviderKey(SQLModel, table=True):
    __tablename__ = "provider_keys"
    __table_args__ = (Index("ix_provider_keys_owner", "owner_kind", "owner", "provider"),)

    id: str = Field(primary_key=True, max_length=40)
    provider: str = Field(max_length=64)
    owner_kind: str = Field(max_length=8)
    """`key` (one router key's) or `team` (every key of the team)."""
    owner: str = Field(max_length=64)
    label: str = Field(default="", max_length=128)
    secret_enc: str | None = Field(default=None, sa_column=Column(Text, nullable=True, info=ENCRYPTED))
    """Fernet ciphertext; None once the key is removed (the row stays so ledger refs still resolve)."""
    fingerprint: str = Field(max_length=16)
    """First 12 hex digits of the secret's SHA-256: tells keys apart, reveals nothing."""
    created_at: datetime = Field(sa_column=_utc())
    disabled: bool = False
    removed_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class PolicyDenial(SQLModel, table=True):
    __tablename__ = "policy_denials"
    __table_args__ = (
        UniqueConstraint("day", "api_key_id", "source", "endpoint", "code", name="uq_policy_denials"),
        Index("ix_policy_denials_key_day", "api_key_id", "day"),
    )

    id: int | None = Field(default=None, primary_key=True)
    day: date = Field(sa_column=Column(Date(), nullable=False, index=True))
    api_key_id: str = Field(default="", max_length=40)
    """'' when the job had no router key."""
    source: str = Field(max_length=16)
    """`routing` (an endpoint excluded for a job) or `submission` (a submission or a line refused)."""
    endpoint: str = Field(default="", max_length=160)
    code: str = Field(max_length=40)
    """The router's exclusion kind (`policy`, `data_policy`, …) or the refusal code (`key_limit_exceeded`, …)."""
    reason: str = Field(sa_column=Column(Text, nullable=False))
    """The latest reason given (they rarely differ within one row's key)."""
    occurrences: int = 0
    first_seen: datetime = Field(sa_column=_utc())
    last_seen: datetime = Field(sa_column=_utc())
    last_batch_id: str | None = Field(default=None, max_length=40)
    last_job_id: str | None = Field(default=None, max_length=40)
