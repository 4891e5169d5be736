"""Every column that holds `SecretBox` ciphertext, and re-encrypting them all under a new master key.

A column is found in either of two ways:
- its table is on `SQLModel.metadata` and the column is declared with `info=ENCRYPTED`
  (`Column(Text, info=shared.tables_keys.ENCRYPTED)`) — nothing else to do;
- or it is registered: `register("webhooks", "secret_enc")` (for tables defined elsewhere).

`rotate_all(box)` is one transaction: every value is re-encrypted under the box's first (newest) master key
and, with `verify_with` (a box holding only that key), proven decryptable by it before anything commits.
Plaintext exists only inside `MultiFernet.rotate`/`decrypt` and is never kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import ColumnClause, Connection, column, select, table, update
from sqlmodel import SQLModel

from shared.crypto import SecretBox
from shared.errors import ConfigError
from shared.store.writer import Deltas, Operation

CHUNK = 500


@dataclass(frozen=True, slots=True)
class SecretColumn:
    table: str
    column: str
    pk: str = "id"

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


_registered: list[SecretColumn] = []


def register(table_name: str, column_name: str, pk: str = "id") -> SecretColumn:
    """Declare an encrypted column that is not marked `info=ENCRYPTED` on SQLModel.metadata."""
    col = SecretColumn(table_name, column_name, pk)
    if col not in _registered:
        _registered.append(col)
    return col


def encrypted_columns() -> list[SecretColumn]:
    found: list[SecretColumn] = []
    for t in SQLModel.metadata.sorted_tables:
        pks = [c.name for c in t.primary_key.columns]
        for c in t.columns:
            if c.info.get("encrypted") and len(pks) == 1:
                found.append(SecretColumn(t.name, c.name, pks[0]))
    return found + [c for c in _registered if c not in found]


def rotate_all(box: SecretBox, *, verify_with: SecretBox | None = None) -> Operation[dict[str, int]]:
    """Re-encrypt every stored secret under `box`'s first master key; {"table.column": n re-encrypted}.
    A value no configured key can decrypt aborts the whole rotation (ConfigError), leaving the store as it was."""
    columns = encrypted_columns()

    def op(conn: Connection, deltas: Deltas) -> dict[str, int]:
        out: dict[str, int] = {}
        for sc in columns:
            out[str(sc)] = _rotate_column(conn, sc, box, verify_with)
        return out

    return op


def _rotate_column(conn: Connection, sc: SecretColumn, box: SecretBox, verify_with: SecretBox | None) -> int:
    pk: ColumnClause[Any] = column(sc.pk)
    val: ColumnClause[Any] = column(sc.column)
    t = table(sc.table, pk, val)
    done = 0
    after: object | None = None
    while True:
        stmt = select(pk, val).select_from(t).where(val.is_not(None)).order_by(pk).limit(CHUNK)
        if after is not None:
            stmt = stmt.where(pk > after)
        rows = conn.execute(stmt).all()
        if not rows:
            return done
        for key, token in rows:
            try:
                new = box.rotate(token)
                if verify_with is not None:
                    verify_with.decrypt(new)
            except (ConfigError, InvalidToken):
                raise ConfigError(
                    f"{sc} row {key}: cannot be decrypted with any configured master key; nothing was changed"
                ) from None
            conn.execute(update(t).where(pk == key).values({sc.column: new}))
            done += 1
        after = rows[-1][0]
