"""Secrets at rest: encrypted, decryptable only with the master key, and the master key rotates."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

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


def _encrypt_at_start(home: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    try:
        out.put(load_box(Path(home), env_value="").encrypt("x"))
    except Exception as e:  # reported to the parent, which fails the test
        out.put(f"error: {type(e).__name__}: {e}")


def test_processes_starting_together_share_one_local_master_key(tmp_path: Path) -> None:
    # eight processes start at once on a fresh home: none fails, and every secret any of them encrypted is
    # readable with the key left on disk (before: FileExistsError, an empty read, or a key lost)
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_encrypt_at_start, args=(str(tmp_path), barrier, out)) for _ in range(8)]
    for p in procs:
        p.start()
    tokens = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert not [t for t in tokens if t.startswith("error")], tokens
    box = load_box(tmp_path, env_value="")
    assert all(box.decrypt(t) == "x" for t in tokens)
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]  # no temporary file left behind
