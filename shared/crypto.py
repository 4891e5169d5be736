"""Secrets at rest: BYOK provider keys and webhook signing secrets are stored encrypted (Fernet: AES-128-CBC
with HMAC-SHA256), under a master key from `ROUTEYARD_MASTER_KEY`. Several comma-separated master keys may be
given — the first encrypts, all decrypt — which is how the master key is rotated: prepend a new key, run
`routeyard secrets rotate-master-key` to re-encrypt every stored secret, then drop the old key.

Without `ROUTEYARD_MASTER_KEY`, a key is generated once into `$ROUTEYARD_HOME/master.key` (mode 0600) so the
embedded mode works out of the box; production deployments set the variable (`routeyard doctor` says so).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.errors import ConfigError

log = logging.getLogger("routeyard")


class SecretBox:
    def __init__(self, master_keys: list[str]) -> None:
        if not master_keys:
            raise ConfigError("no master key: set ROUTEYARD_MASTER_KEY")
        try:
            self._fernets = [Fernet(k.strip().encode()) for k in master_keys if k.strip()]
        except ValueError as e:
            raise ConfigError(
                "ROUTEYARD_MASTER_KEY must be url-safe base64 of 32 bytes (make one with `routeyard secrets new-key`)"
            ) from e
        self._box = MultiFernet(self._fernets)

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: str) -> str:
        return self._box.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._box.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError("a stored secret cannot be decrypted with the configured master key(s)") from None

    def rotate(self, token: str) -> str:
        """Re-encrypt under the first (newest) master key."""
        return self._box.rotate(token.encode()).decode()


def load_box(home: Path, env_value: str | None = None) -> SecretBox:
    value = env_value if env_value is not None else os.environ.get("ROUTEYARD_MASTER_KEY")
    if value:
        return SecretBox(value.split(","))
    path = home / "master.key"
    if not path.exists():
        _create_once(path, SecretBox.new_key())
    return SecretBox([path.read_text().strip()])


def _create_once(path: Path, key: str) -> None:
    """Publish `key` at `path` unless another process got there first. The key is written whole to a private
    temporary file and hard-linked into place, which fails if the path exists: two processes starting at once
    both end up reading the one key that won, never a half-written file, and never encrypt under a key that
    is then lost."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".master.key.")  # created with mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
        log.warning("ROUTEYARD_MASTER_KEY is not set: generated a local master key at %s", path)
    finally:
        os.unlink(tmp)
