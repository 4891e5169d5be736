"""`routeyard` — the command line. One module per group of commands; each registers itself on `app`."""

from __future__ import annotations

from producer.cli import (  # noqa: F401  (register commands)
    api,
    batches,
    db,
    keys,
    ops,
    reports,
    routing,
    secrets,
    serve,
    webhooks,
)
from producer.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
