"""`routeyard keys`, `provider-keys`, `secrets` and `audit` as an operator runs them (in process, on both
stores): tokens printed once and only on stdout, secrets never echoed, rotation of the master key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ry_helpers import TEST_CONFIG
from typer.testing import CliRunner

from producer.cli import app
from shared.crypto import SecretBox
from shared.settings import get_settings

BYOK = "sk-cli-byok-abcdefghijklmnop0123"


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("ROUTEYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ROUTEYARD_MASTER_KEY", SecretBox.new_key())
    (tmp_path / "routeyard.toml").write_text(TEST_CONFIG)
    monkeypatch.setenv("ROUTEYARD_CONFIG", str(tmp_path / "routeyard.toml"))
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, ok: bool = True) -> Any:
        result = runner.invoke(app, list(args), input=input)
        if ok:
            assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    yield invoke
    get_settings.cache_clear()


def test_keys_lifecycle(cli: Any) -> None:
    created = cli(
        "keys",
        "create",
        "nightly",
        "--env",
        "prod",
        "--team",
        "ml",
        "--project",
        "evals",
        "--label",
        "sensitive",
        "--limit",
        "12.50",
        "--reset",
        "monthly",
        "--allow-model",
        "small-a",
        "--allow-provider",
        "alpha",
    )
    token = created.stdout.strip()
    assert token.startswith("ry_live_") and "\n" not in token  # stdout holds the token alone
    assert "shown once" in created.stderr
    [listed] = json.loads(cli("keys", "list", "--json").stdout)
    key_id = listed["id"]
    assert listed["allowed_models"] == ["small"] and listed["limit"] == "12.5" and listed["state"] == "active"
    assert token not in cli("keys", "list").stdout

    shown = json.loads(cli("keys", "show", key_id, "--json").stdout)
    period = shown["current_period"]
    assert period["spent"] == "0" and period["remaining"] == "12.5" and period["resets_at"].endswith("-01T00:00:00Z")
    assert (period["jobs"], period["calls"], period["input_tokens"]) == (0, 0, 0)
    text = cli("keys", "show", key_id).stdout
    assert "$12.50 per month" in text and "resets at" in text and "remaining" in text

    cli("keys", "disable", key_id)
    assert json.loads(cli("keys", "show", key_id, "--json").stdout)["state"] == "disabled"
    assert json.loads(cli("keys", "list", "--active", "--json").stdout) == []
    cli("keys", "enable", key_id)
    rotated = cli("keys", "rotate", key_id).stdout.strip()
    assert rotated.startswith("ry_live_") and rotated != token

    assert cli("keys", "show", "key_nope", ok=False).exit_code == 1
    bad = cli("keys", "create", "x", "--allow-model", "no-such-model", ok=False)
    assert bad.exit_code != 0 and "unknown model" in bad.output
    assert cli("keys", "create", "x", "--limit", "-3", ok=False).exit_code != 0
    assert cli("keys", "create", "x", "--reset", "hourly", ok=False).exit_code != 0
    expiring = json.loads(cli("keys", "create", "temp", "--expires", "30d", "--json").stdout)
    assert expiring["expires_at"] is not None and expiring["token"].startswith("ry_test_")


def test_keys_update_changes_only_what_is_given(cli: Any) -> None:
    created = json.loads(
        cli(
            "keys",
            "create",
            "evals",
            "--team",
            "ml",
            "--project",
            "p",
            "--limit",
            "5",
            "--allow-model",
            "small-a",
            "--json",
        ).stdout
    )
    key_id = created["id"]
    changed = json.loads(
        cli("keys", "update", key_id, "--team", "research", "--limit", "none", "--reset", "weekly", "--json").stdout
    )
    assert (changed["team"], changed["limit"], changed["limit_reset"]) == ("research", None, "weekly")
    assert (changed["project"], changed["allowed_models"]) == ("p", ["small"])  # untouched
    cleared = json.loads(cli("keys", "update", key_id, "--project", "", "--allow-all", "--json").stdout)
    assert cleared["project"] is None and cleared["allowed_models"] is None
    assert cli("keys", "update", key_id, ok=False).exit_code != 0  # nothing to change
    assert "unknown provider" in cli("keys", "update", key_id, "--allow-provider", "nope", ok=False).output
    assert cli("keys", "update", "key_nope", "--team", "x", ok=False).exit_code == 1


def test_usage_and_audit_commands(cli: Any) -> None:
    cli("keys", "create", "a", "--team", "ml")
    usage = json.loads(cli("keys", "usage", "--by", "team", "--since", "7d", "--json").stdout)
    assert usage["by"] == "team" and usage["rows"] == []
    assert "usage by team" in cli("keys", "usage", "--by", "team").stdout
    assert cli("keys", "usage", "--by", "colour", ok=False).exit_code != 0
    assert json.loads(cli("audit", "--json").stdout) == []
    assert "denial row(s)" in cli("audit", "--since", "2024-01-01", "--code", "policy").stdout


def test_provider_keys_never_echo_the_secret(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    added = cli("provider-keys", "add", "alpha", "--team", "ml", "--label", "main", "--stdin", input=BYOK + "\n")
    assert BYOK not in added.output and "fingerprint" in added.stdout
    monkeypatch.setenv("MY_BETA_KEY", BYOK + "-beta")
    cli("provider-keys", "add", "beta", "--team", "ml", "--from-env", "MY_BETA_KEY")
    prompted = cli("provider-keys", "add", "gamma", "--team", "ml", input=BYOK + "-gamma\n")
    assert BYOK not in prompted.output  # the prompt hides what is typed
    listed = cli("provider-keys", "list", "--json")
    keys = json.loads(listed.stdout)
    assert [k["provider"] for k in keys] == ["alpha", "beta", "gamma"] and BYOK not in listed.stdout
    assert cli("provider-keys", "add", "nope", "--team", "ml", "--stdin", input="x\n", ok=False).exit_code != 0
    assert cli("provider-keys", "add", "alpha", "--stdin", input="x\n", ok=False).exit_code != 0  # no owner
    assert cli("provider-keys", "add", "alpha", "--key", "key_nope", "--stdin", input="x\n", ok=False).exit_code != 0
    cli("provider-keys", "remove", keys[0]["id"])
    assert len(json.loads(cli("provider-keys", "list", "--json").stdout)) == 2
    assert len(json.loads(cli("provider-keys", "list", "--all", "--json").stdout)) == 3
    assert cli("provider-keys", "remove", keys[0]["id"], ok=False).exit_code == 1


def test_master_key_rotation(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    old = os.environ["ROUTEYARD_MASTER_KEY"]
    cli("provider-keys", "add", "alpha", "--team", "ml", "--stdin", input=BYOK + "\n")
    new = cli("secrets", "new-key").stdout.strip()
    SecretBox([new])  # a valid key
    monkeypatch.setenv("ROUTEYARD_MASTER_KEY", f"{new},{old}")
    out = cli("secrets", "rotate-master-key").stdout
    assert "provider_keys.secret_enc: 1 secret(s) re-encrypted" in out
    assert new not in out and old not in out
    # with only the new key, the stored secret still decrypts; with only the old one it does not
    from shared.provider_keys import active_provider_keys
    from shared.store import Store

    store = Store.open(get_settings().resolved_database_url())
    try:
        [sealed] = store.read_sync(active_provider_keys())
    finally:
        store.close_sync()
    assert SecretBox([new]).decrypt(sealed.secret_enc) == BYOK
    with pytest.raises(Exception, match="cannot be decrypted"):
        SecretBox([old]).decrypt(sealed.secret_enc)
    # a master key that cannot read the store aborts the rotation
    monkeypatch.setenv("ROUTEYARD_MASTER_KEY", f"{SecretBox.new_key()},{old}")
    failed = cli("secrets", "rotate-master-key", ok=False)
    assert failed.exit_code == 1 and "nothing was changed" in failed.output
