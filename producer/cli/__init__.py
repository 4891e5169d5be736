"""`routeyard` — the command line. One module per group of commands; each registers itself on `app`."""

from __future__ import annotations

from producer.cli import batches, db, keys, ops, reports, secrets, serve  # noqa: F401  (register commands)
from producer.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
