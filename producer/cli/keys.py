"""Router API keys (`routeyard keys …`) and the governance audit (`routeyard audit`).

These commands work on the store directly (DATABASE_URL): whoever runs them is an operator. A key's token
is printed once — to standard output alone, so `TOKEN=$(routeyard keys create …)` captures it — and is
never stored or shown again; `rotate` issues a new one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from producer.cli.app import ConfigOption, app, config, console, err_console, run, settings
from producer.key_views import budget_json, iso, key_json, key_state, resolve_allowances
from shared import timeutil
from shared.errors import InputError
from shared.keys import ENVIRONMENTS, ApiKey, KeyStore
from shared.money import fmt_usd
from shared.periods import EPOCH, LIMIT_RESETS, period_bounds
from shared.spend import KeyBudget, key_budget
from shared.store import Store
from shared.timeutil import utcnow
from shared.usage import DIMENSIONS, usage_by

T = TypeVar("T")

keys_app = typer.Typer(
    name="keys", help="Router API keys: create, list, show, disable, enable, rotate, usage.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


def parse_when(text: str, *, now: datetime, future: bool = False) -> datetime:
    """`shared.timeutil.parse_when`, its refusal as a usage error."""
    try:
        return timeutil.parse_when(text, now=now, future=future)
    except InputError as e:
        raise typer.BadParameter(e.message) from None


def _dollars(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text.strip().removeprefix("$"))
    except InvalidOperation:
        raise typer.BadParameter(f"{text!r} is not an amount in dollars") from None
    if value < 0 or not value.is_finite():
        raise typer.BadParameter("the limit must be zero or more dollars")
    return value


def with_store(fn: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        store = Store.open(settings().resolved_database_url())
        try:
            return await fn(store)
        finally:
            await store.close()

    return run(go())


def _resolve_allowed(
    cfg_path: Path | None, classes: list[str], models: list[str], providers: list[str]
) -> tuple[list[str] | None, list[str] | None, list[str] | None]:
    """Check the allowances against the config: unknown names are refused now, not discovered later."""
    if not (classes or models or providers):
        return None, None, None
    from shared.catalog import Catalog

    try:
        return resolve_allowances(Catalog.from_config(config(cfg_path)), classes, models, providers)
    except InputError as e:
        raise typer.BadParameter(e.message) from None


@keys_app.command("create")
def create(
    name: str = typer.Argument(..., help="what the key is for, e.g. 'nightly-evals'"),
    environment: str = typer.Option("dev", "--env", help=" | ".join(ENVIRONMENTS)),
    team: str | None = typer.Option(None),
    project: str | None = typer.Option(None),
    label: list[str] = typer.Option([], "--label", help="repeatable; a label in policy.zdr_labels requires ZDR"),
    expires: str | None = typer.Option(None, help="2026-12-31, an ISO time, or a duration (90d)"),
    allow_class: list[str] = typer.Option([], "--allow-class", help="repeatable; default: every class"),
    allow_model: list[str] = typer.Option([], "--allow-model", help="repeatable; default: every model"),
    allow_provider: list[str] = typer.Option([], "--allow-provider", help="repeatable; default: every provider"),
    limit: str | None = typer.Option(None, help="spending limit in USD per period (default: unlimited)"),
    reset: str = typer.Option("none", help=" | ".join(LIMIT_RESETS) + " (UTC midnight; weeks start Monday)"),
    include_byok: bool = typer.Option(False, "--include-byok", help="BYOK calls' upstream cost counts too"),
    admin: bool = typer.Option(False, "--admin", help="admin scope: sees every tenant, manages keys"),
    as_json: bool = typer.Option(False, "--json"),
    cfg: Path | None = ConfigOption,
) -> None:
    """Create a key. Its token is printed once, on standard output; store it now."""
    now = utcnow()
    classes, models, providers = _resolve_allowed(cfg, allow_class, allow_model, allow_provider)

    async def go(store: Store) -> tuple[ApiKey, str]:
        try:
            return await KeyStore(store).create(
                name,
                environment=environment,
                team=team,
                project=project,
                labels=label,
                expires_at=None if expires is None else parse_when(expires, now=now, future=True),
                allowed_classes=classes,
                allowed_models=models,
                allowed_providers=providers,
                limit=_dollars(limit),
                limit_reset=reset,
                include_byok_in_limit=include_byok,
                admin=admin,
            )
        except InputError as e:
            raise typer.BadParameter(e.message) from None

    key, token = with_store(go)
    if as_json:
        print(json.dumps({**key_json(key, now), "token": token}, indent=2))
        return
    err_console.print(f"created key {key.id} ({escape(key.name)}); its token is shown once — store it now:")
    print(token)


def _keys_table(keys: list[ApiKey], now: datetime) -> Table:
    t = Table(title=f"{len(keys)} key(s)", title_justify="left")
    for col in ("id", "name", "env", "team", "project", "labels", "limit", "state", "created"):
        t.add_column(col)
    for k in keys:
        t.add_row(
            k.id,
            escape(k.name),
            k.environment,
            escape(k.team or ""),
            escape(k.project or ""),
            escape(", ".join(sorted(k.labels))),
            k.describe_limit(),
            key_state(k, now) + (" (admin)" if k.admin else ""),
            k.created_at.strftime("%Y-%m-%d"),
        )
    return t


@keys_app.command("list")
def list_cmd(
    team: str | None = typer.Option(None),
    environment: str | None = typer.Option(None, "--env"),
    active: bool = typer.Option(False, "--active", help="leave disabled keys out"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List keys (never their tokens)."""
    now = utcnow()
    keys = with_store(lambda s: KeyStore(s).list(team=team, environment=environment, include_disabled=not active))
    if as_json:
        print(json.dumps([key_json(k, now) for k in keys], indent=2))
        return
    console.print(_keys_table(keys, now))


def _need_key(key: Any, key_id: str) -> None:
    if key is None:
        err_console.print(f"[red]no key {escape(key_id)}[/red]")
        raise typer.Exit(1)


@keys_app.command("show")
def show(key_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """A key's settings and its current period: spend, tokens, jobs, remaining limit and the reset time."""
    now = utcnow()
    budget: KeyBudget | None = with_store(lambda s: s.read(key_budget(key_id, now)))
    _need_key(budget, key_id)
    assert budget is not None
    key, b = budget.key, budget_json(budget)
    if as_json:
        print(json.dumps({**key_json(key, now), "current_period": b}, indent=2))
        return
    kj = key_json(key, now)
    t = Table(show_header=False, title=f"key {key.id}", title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    for field in ("name", "state", "environment", "team", "project", "admin", "expires_at"):
        t.add_row(field, escape(str(kj[field] if kj[field] is not None else "-")))
    t.add_row("labels", escape(", ".join(kj["labels"]) or "-"))
    for field in ("allowed_classes", "allowed_models", "allowed_providers"):
        t.add_row(field, escape(", ".join(kj[field]) if kj[field] is not None else "all"))
    t.add_row("limit", key.describe_limit() + (" (BYOK cost included)" if key.include_byok_in_limit else ""))
    t.add_row("created / rotated", f"{kj['created_at']} / {kj['rotated_at'] or '-'}")
    s = budget.spend
    unknown = f" + {s.unpriced_calls} call(s) of unknown price" if s.unpriced_calls else ""
    t.add_section()
    t.add_row("period", f"{b['period_start']} → {b['resets_at'] or 'never resets'}")
    t.add_row(
        "spent",
        f"{fmt_usd(budget.spent, 6)}{unknown}" + (f" (+{fmt_usd(s.in_flight, 6)} in flight)" if s.in_flight else ""),
    )
    t.add_row("  of which", f"pooled calls {fmt_usd(s.credits_cost, 6)}, BYOK fees {fmt_usd(s.fees, 6)}")
    t.add_row("BYOK upstream cost", fmt_usd(s.byok_cost, 6) + ("" if key.include_byok_in_limit else " (not counted)"))
    t.add_row("remaining", "unlimited" if budget.remaining is None else fmt_usd(budget.remaining, 6))
    t.add_row("resets at", b["resets_at"] or "never (limit_reset = none)")
    t.add_row("calls / jobs", f"{s.calls:,} calls, {s.jobs:,} jobs")
    t.add_row("tokens", f"{s.input_tokens:,} in, {s.output_tokens:,} out")
    console.print(t)


def _set_disabled(key_id: str, disabled: bool) -> None:
    key = with_store(lambda s: KeyStore(s).set_disabled(key_id, disabled))
    _need_key(key, key_id)
    console.print(f"key {key_id} {'disabled' if disabled else 'enabled'}")


@keys_app.command("disable")
def disable(key_id: str = typer.Argument(...)) -> None:
    """Refuse the key from now on (submissions and the gateway); its history stays."""
    _set_disabled(key_id, True)


@keys_app.command("enable")
def enable(key_id: str = typer.Argument(...)) -> None:
    """Accept a disabled key again."""
    _set_disabled(key_id, False)


@keys_app.command("update")
def update_cmd(
    key_id: str = typer.Argument(...),
    name: str | None = typer.Option(None),
    team: str | None = typer.Option(None, help="'' clears it"),
    project: str | None = typer.Option(None, help="'' clears it"),
    label: list[str] = typer.Option([], "--label", help="repeatable; replaces the labels"),
    clear_labels: bool = typer.Option(False, "--clear-labels"),
    expires: str | None = typer.Option(None, help="2026-12-31, an ISO time, a duration (90d), or 'never'"),
    allow_class: list[str] = typer.Option([], "--allow-class", help="repeatable; replaces the allowance"),
    allow_model: list[str] = typer.Option([], "--allow-model", help="repeatable; replaces the allowance"),
    allow_provider: list[str] = typer.Option([], "--allow-provider", help="repeatable; replaces the allowance"),
    allow_all: bool = typer.Option(False, "--allow-all", help="lift every class, model and provider allowance"),
    limit: str | None = typer.Option(None, help="USD per period, or 'none' for unlimited"),
    reset: str | None = typer.Option(None, help=" | ".join(LIMIT_RESETS)),
    include_byok: bool | None = typer.Option(None, "--include-byok/--exclude-byok"),
    as_json: bool = typer.Option(False, "--json"),
    cfg: Path | None = ConfigOption,
) -> None:
    """Change a key's settings; what is not given stays. Jobs already submitted keep the team, project and
    environment they were recorded with. Environment and admin scope are fixed: make a new key for those."""
    now = utcnow()
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    for field, value in (("team", team), ("project", project)):
        if value is not None:
            changes[field] = value or None
    if label or clear_labels:
        changes["labels"] = label
    if expires is not None:
        changes["expires_at"] = None if expires == "never" else parse_when(expires, now=now, future=True)
    if allow_all:
        changes.update(allowed_classes=None, allowed_models=None, allowed_providers=None)
    else:
        classes, models, providers = _resolve_allowed(cfg, allow_class, allow_model, allow_provider)
        for allowance, given, resolved in (
            ("allowed_classes", allow_class, classes),
            ("allowed_models", allow_model, models),
            ("allowed_providers", allow_provider, providers),
        ):
            if given:
                changes[allowance] = resolved
    if limit is not None:
        changes["limit"] = None if limit == "none" else _dollars(limit)
    if reset is not None:
        changes["limit_reset"] = reset
    if include_byok is not None:
        changes["include_byok_in_limit"] = include_byok
    if not changes:
        raise typer.BadParameter("nothing to change: give at least one option")

    async def go(store: Store) -> ApiKey | None:
        try:
            return await KeyStore(store).update(key_id, changes)
        except InputError as e:
            raise typer.BadParameter(e.message) from None

    key = with_store(go)
    _need_key(key, key_id)
    assert key is not None
    if as_json:
        print(json.dumps(key_json(key, now), indent=2))
        return
    err_console.print(f"key {key.id} updated: {', '.join(sorted(changes))}")


@keys_app.command("rotate")
def rotate(key_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """Issue a new token for the key; the old one stops working at once. Printed once."""
    rotated = with_store(lambda s: KeyStore(s).rotate(key_id))
    _need_key(rotated, key_id)
    assert rotated is not None
    key, token = rotated
    if as_json:
        print(json.dumps({"id": key.id, "token": token, "rotated_at": iso(key.rotated_at)}))
        return
    err_console.print(f"key {key.id} rotated; the old token no longer works. New token (shown once):")
    print(token)


@keys_app.command("usage")
def usage(
    by: str = typer.Option("key", "--by", help=" | ".join(DIMENSIONS)),
    since: str | None = typer.Option(None, help="date, time or duration (7d); default: this month"),
    until: str | None = typer.Option(None, help="exclusive end; default: now"),
    team: str | None = typer.Option(None, help="only this team's keys"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Spend, tokens, calls and jobs per key, team, project or environment over a period."""
    if by not in DIMENSIONS:
        raise typer.BadParameter(f"--by must be one of {', '.join(DIMENSIONS)}")
    now = utcnow()
    start = parse_when(since, now=now) if since else period_bounds("monthly", now).start
    end = parse_when(until, now=now) if until else None
    rows = with_store(lambda s: s.read(usage_by(by, start, end, team=team)))
    if as_json:
        print(
            json.dumps(
                {
                    "by": by,
                    "since": iso(start),
                    "until": iso(end),
                    "rows": [
                        {
                            by: r.group,
                            "charged": str(r.charged),
                            "credits_cost": str(r.credits_cost),
                            "byok_fees": str(r.fees),
                            "byok_cost": str(r.byok_cost),
                            "unpriced_calls": r.unpriced_calls,
                            "in_flight": str(r.in_flight),
                            "calls": r.calls,
                            "jobs": r.jobs,
                            "input_tokens": r.input_tokens,
                            "output_tokens": r.output_tokens,
                        }
                        for r in rows
                    ],
                },
                indent=2,
            )
        )
        return
    t = Table(title=f"usage by {by} since {iso(start) if start > EPOCH else 'the beginning'}", title_justify="left")
    for col, just in [
        (by, "left"),
        ("charged", "right"),
        ("BYOK upstream", "right"),
        ("calls", "right"),
        ("jobs", "right"),
        ("input tok", "right"),
        ("output tok", "right"),
    ]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        charged = fmt_usd(r.charged, 6) + (f" + {r.unpriced_calls} unpriced" if r.unpriced_calls else "")
        t.add_row(
            escape(r.group or "(none)"),
            charged,
            fmt_usd(r.byok_cost, 6),
            f"{r.calls:,}",
            f"{r.jobs:,}",
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
        )
    console.print(t)


@app.command("audit")
def audit(
    since: str | None = typer.Option(None, help="first day (date or duration, e.g. 7d); default: all"),
    until: str | None = typer.Option(None, help="last day, inclusive"),
    key: str | None = typer.Option(None, "--key", help="router key id"),
    team: str | None = typer.Option(None),
    code: str | None = typer.Option(None, help="e.g. data_policy, policy, key_limit_exceeded, model_not_allowed"),
    source: str | None = typer.Option(None, help="routing | submission"),
    endpoint: str | None = typer.Option(None, help="provider/model"),
    limit: int = typer.Option(200, min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Governance denials: endpoints policy excluded for a key's jobs, and refused submissions — one row per
    day, key, endpoint and reason, with how often it happened."""
    from shared.audit import audit_rows

    now = utcnow()

    def day(text: str | None) -> date | None:
        return None if text is None else parse_when(text, now=now).date()

    rows = with_store(
        lambda s: s.read(
            audit_rows(
                since=day(since),
                until=day(until),
                key_id=key,
                team=team,
                code=code,
                source=source,
                endpoint=endpoint,
                limit=limit,
            )
        )
    )
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    t = Table(title=f"{len(rows)} denial row(s)", title_justify="left")
    for col in ("day", "key", "team", "source", "endpoint", "code", "times", "last seen", "reason"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(
            r["day"].isoformat(),
            escape(r["api_key_id"] or "(none)"),
            escape(r["team"] or ""),
            r["source"],
            escape(r["endpoint"] or "-"),
            r["code"],
            f"{r['occurrences']:,}",
            r["last_seen"].strftime("%H:%M:%S"),
            escape(r["reason"]),
        )
    console.print(t)
