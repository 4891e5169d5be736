"""BYOK provider keys (`routeyard provider-keys …`) and the master key (`routeyard secrets …`).

A provider key is read from a hidden prompt, standard input (`--stdin`) or an environment variable
(`--from-env VAR`) — never from a command-line argument, which would land in shell history and `ps` — and is
never printed back: listings show its id, label and fingerprint.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from producer.cli.app import ConfigOption, app, config, console, err_console, settings
from producer.cli.keys import with_store
from shared.crypto import SecretBox, load_box
from shared.errors import ConfigError, InputError
from shared.provider_keys import ProviderKeyInfo, ProviderKeyStore
from shared.store import Store

pk_app = typer.Typer(name="provider-keys", help="BYOK: your own provider keys, stored encrypted.", no_args_is_help=True)
secrets_app = typer.Typer(name="secrets", help="The master key that encrypts stored secrets.", no_args_is_help=True)
app.add_typer(pk_app, name="provider-keys")
app.add_typer(secrets_app, name="secrets")


def _box() -> SecretBox:
    try:
        return load_box(settings().home)
    except ConfigError as e:
        err_console.print("[red]master key error:[/red]", escape(str(e)))
        raise typer.Exit(2) from None


def _read_secret(from_env: str | None, stdin: bool) -> str:
    if from_env is not None and stdin:
        raise typer.BadParameter("give --from-env or --stdin, not both")
    if from_env is not None:
        value = os.environ.get(from_env)
        if not value:
            raise typer.BadParameter(f"environment variable {from_env} is not set")
        return value
    if stdin:
        return sys.stdin.readline().strip()
    prompted: str = typer.prompt("provider key", hide_input=True)
    return prompted


def _info_json(k: ProviderKeyInfo) -> dict[str, object]:
    return {
        "id": k.id,
        "ref": k.ref,
        "provider": k.provider,
        "owner_kind": k.owner_kind,
        "owner": k.owner,
        "label": k.label,
        "fingerprint": k.fingerprint,
        "created_at": k.created_at.isoformat(),
        "disabled": k.disabled,
        "removed_at": None if k.removed_at is None else k.removed_at.isoformat(),
    }


@pk_app.command("add")
def add(
    provider: str = typer.Argument(..., help="a provider of the config, e.g. openai"),
    team: str | None = typer.Option(None, help="the key serves every router key of this team"),
    key: str | None = typer.Option(None, "--key", help="the key serves this router key only (preferred over team)"),
    label: str = typer.Option("", help="a name to recognise it by"),
    from_env: str | None = typer.Option(None, "--from-env", help="read the secret from this environment variable"),
    stdin: bool = typer.Option(False, "--stdin", help="read the secret from the first line of standard input"),
    as_json: bool = typer.Option(False, "--json"),
    cfg: Path | None = ConfigOption,
) -> None:
    """Store a provider key, encrypted. Read from a hidden prompt unless --stdin or --from-env."""
    if (team is None) == (key is None):
        raise typer.BadParameter("give exactly one owner: --team TEAM or --key ROUTER_KEY_ID")
    providers = config(cfg).providers
    if provider not in providers:
        raise typer.BadParameter(f"unknown provider {provider!r}; configured: {', '.join(providers)}")
    secret = _read_secret(from_env, stdin)
    box = _box()
    owner_kind, owner = ("team", team) if team is not None else ("key", key)
    assert owner is not None

    async def go(store: Store) -> ProviderKeyInfo:
        try:
            return await ProviderKeyStore(store, box).add(provider, owner_kind, owner, secret, label=label)
        except InputError as e:
            raise typer.BadParameter(e.message) from None

    info = with_store(go)
    if as_json:
        print(json.dumps(_info_json(info), indent=2))
        return
    console.print(
        f"stored {info.id} ({info.provider} key of {info.owner_kind} {escape(info.owner)}, "
        f"fingerprint {info.fingerprint}); calls record it as {info.ref}"
    )


@pk_app.command("list")
def list_cmd(
    provider: str | None = typer.Option(None),
    team: str | None = typer.Option(None),
    key: str | None = typer.Option(None, "--key"),
    include_removed: bool = typer.Option(False, "--all", help="include removed keys"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List provider keys: id, owner, label and fingerprint — never the secret."""
    owner_kind, owner = ("team", team) if team is not None else ("key", key) if key is not None else (None, None)
    keys = with_store(
        lambda s: ProviderKeyStore(s).list(
            provider=provider, owner_kind=owner_kind, owner=owner, include_removed=include_removed
        )
    )
    if as_json:
        print(json.dumps([_info_json(k) for k in keys], indent=2))
        return
    t = Table(title=f"{len(keys)} provider key(s)", title_justify="left")
    for col in ("id", "provider", "owner", "label", "fingerprint", "state", "created"):
        t.add_column(col)
    for k in keys:
        state = "removed" if k.removed_at else "disabled" if k.disabled else "active"
        t.add_row(
            k.id,
            k.provider,
            escape(f"{k.owner_kind}:{k.owner}"),
            escape(k.label),
            k.fingerprint,
            state,
            k.created_at.strftime("%Y-%m-%d"),
        )
    console.print(t)


@pk_app.command("remove")
def remove(provider_key_id: str = typer.Argument(...)) -> None:
    """Remove a provider key: its ciphertext is wiped; the ledger's references to it stay readable.
    Running workers drop it at their next keyring refresh."""
    if not with_store(lambda s: ProviderKeyStore(s).remove(provider_key_id)):
        err_console.print(f"[red]no provider key {escape(provider_key_id)} (or already removed)[/red]")
        raise typer.Exit(1)
    console.print(f"removed {provider_key_id}")


@secrets_app.command("new-key")
def new_key() -> None:
    """Print a new master key (url-safe base64 of 32 random bytes) for ROUTEYARD_MASTER_KEY."""
    print(SecretBox.new_key())


@secrets_app.command("rotate-master-key")
def rotate_master_key() -> None:
    """Re-encrypt every stored secret under the first key of ROUTEYARD_MASTER_KEY (see README: rotation).
    One transaction: a secret no configured key can decrypt aborts it and changes nothing."""
    from shared.secret_columns import rotate_all

    env = os.environ.get("ROUTEYARD_MASTER_KEY", "")
    keys = [k for k in env.split(",") if k.strip()]
    box = _box()
    if len(keys) < 2:
        err_console.print(
            "note: ROUTEYARD_MASTER_KEY holds fewer than two keys; to rotate, set it to 'NEW,OLD' "
            "(the new key first) and run this again. Re-encrypting under the current key."
        )
    primary = SecretBox(keys[:1]) if keys else box
    counts = with_store(lambda s: s.write_direct(rotate_all(box, verify_with=primary)))
    for column, n in counts.items():
        console.print(f"{column}: {n} secret(s) re-encrypted")
    console.print("done: every stored secret is now under the first master key; the old key can be dropped")
