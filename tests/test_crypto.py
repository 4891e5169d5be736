"""Secrets at rest: encrypted, decryptable only with the master key, and the master key rotates."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.crypto import SecretBox, load_box
from shared.errors import ConfigError


def test_round_trip_and_ciphertext_hides_the_secret() -> None:
    box = SecretBox([SecretBox.new_key()])
    token = box.encrypt("sk-live-secret-value")
    assert "sk-live" not in token and box.decrypt(token) == "sk-live-secret-value"


def test_rotation_keeps_old_secrets_readable_then_drops_the_old_key() -> None:
    old, new = SecretBox.new_key(), SecretBox.new_key()
    token = SecretBox([old]).encrypt("s3cret")
    both = SecretBox([new, old])
    rotated = both.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "s3cret"
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        SecretBox([new]).decrypt(token)


def test_bad_master_key_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="url-safe base64"):
        SecretBox(["not-a-key"])


def test_local_master_key_is_created_once_and_private(tmp_path: Path) -> None:
    box = load_box(tmp_path, env_value="")
    again = load_box(tmp_path, env_value="")
    assert again.decrypt(box.encrypt("x")) == "x"
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
