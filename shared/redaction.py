"""Secrets never leave in plaintext: this scrubs provider keys, router keys and webhook secrets from text
that goes to logs, errors, results and the database."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Shapes of well-known secrets, caught even when we were not told the exact value.
_PATTERNS = [
    re.compile(r"sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"),
    re.compile(r"whsec_[A-Za-z0-9+/=]{16,}"),
    re.compile(r"ry_(?:live|test)_[A-Za-z0-9]{16,}"),
    re.compile(r"AIza[0-9A-Za-z_\-]{30,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{12,}"),
]
MASK = "[redacted]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + MASK, text)
    return text
