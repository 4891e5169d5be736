"""Identifiers: time-ordered, unguessable, with a readable prefix (`job_`, `bat_`, `att_`).

Time order keeps B-tree inserts local in PostgreSQL and makes ids sort by creation in listings; 80 random
bits make them unguessable, which matters because a tenant's id is also the handle it polls.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A ULID-shaped id (48-bit millisecond time + 80 random bits) behind `prefix_`."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return f"{prefix}_{_encode(millis, 10)}{_encode(rand, 16)}"


def job_id() -> str:
    return new_id("job")


def batch_id() -> str:
    return new_id("bat")


def attempt_id() -> str:
    return new_id("att")
