"""`routeyard webhooks`: the delivery log, and replays."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from producer.cli.app import app, console, err_console, run, settings

webhooks = typer.Typer(help="Webhook deliveries: the log of every try, and replays.", no_args_is_help=True)
app.add_typer(webhooks, name="webhooks")


@webhooks.command("deliveries")
def deliveries(
    batch: str | None = typer.Option(None, "--batch", help="only this batch's deliveries"),
    status: str | None = typer.Option(None, help="pending | succeeded | failed | disabled"),
    limit: int = typer.Option(50),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recent deliveries with their tries (status code, latency, error)."""
    from shared.store import Store
    from shared.webhook_store import attempts_of, list_deliveries

    async def go() -> None:
        store = Store.open(settings().resolved_database_url())
        try:
            rows = await store.read(list_deliveries(batch_id=batch, status=status, limit=limit))
            tries = await store.read(attempts_of([r["id"] for r in rows]))
        finally:
            await store.close()
        if as_json:
            out = [{**{k: v for k, v in r.items() if k != "payload"}, "tries": tries[r["id"]]} for r in rows]
            print(json.dumps(out, default=str, indent=2))
            return
        t = Table(title=f"{len(rows)} deliveries", title_justify="left")
        for col in ("delivery", "event", "message", "status", "tries", "last"):
            t.add_column(col)
        for r in rows:
            last = tries[r["id"]][-1] if tries[r["id"]] else None
            detail = "" if last is None else f"{last['status_code'] or last['error'] or ''} in {last['latency_ms']} ms"
            t.add_row(r["id"], r["event_type"], r["message_id"], r["status"], str(r["attempts"]), escape(detail))
        console.print(t)

    run(go())


@webhooks.command("replay")
def replay(
    delivery: str | None = typer.Option(None, "--delivery", help="a delivery id (whd_…)"),
    event: str | None = typer.Option(None, "--event", help="a message id (the webhook-id header, msg_…)"),
    batch: str | None = typer.Option(None, "--batch", help="every message of a batch"),
    only_failed: bool = typer.Option(False, "--failed", help="only messages whose last delivery failed"),
) -> None:
    """Send messages again — same webhook-id and body, freshly signed — to their subscriptions (a disabled
    subscription is re-enabled). The workers deliver them."""
    if not (delivery or event or batch):
        err_console.print("[red]give --delivery, --event or --batch[/red]")
        raise typer.Exit(2)
    from arq.connections import ArqRedis

    from shared.store import Store
    from shared.webhook_store import replay_deliveries

    async def go() -> None:
        s = settings()
        store = Store.open(s.resolved_database_url())
        redis = ArqRedis.from_url(s.redis_url)
        try:
            ids = await replay_deliveries(
                store, redis, s.redis_prefix, delivery_id=delivery, message_id=event, batch_id=batch,
                only_failed=only_failed,
            )  # fmt: skip
        finally:
            await redis.aclose()
            await store.close()
        for i in ids:
            print(i)
        err_console.print(f"{len(ids)} deliveries queued")

    run(go())
