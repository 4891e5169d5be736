"""The Typer application and what every command shares: settings, config, console, async running."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from shared.config import RouteyardConfig, load_config
from shared.errors import ConfigError, RouteyardError
from shared.settings import Settings, get_settings

T = TypeVar("T")

app = typer.Typer(
    name="routeyard",
    help="A durable job router for LLM inference batches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

ConfigOption = typer.Option(
    None, "--config", "-c", help="routeyard.toml (default: $ROUTEYARD_CONFIG, ./routeyard.toml, built-in)"
)


def settings() -> Settings:
    return get_settings()


def config(path: Path | None) -> RouteyardConfig:
    try:
        return load_config(path)
    except ConfigError as e:
        err_console.print("[red]config error:[/red]", escape(str(e)))
        raise typer.Exit(2) from None


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except RouteyardError as e:
        err_console.print("[red]error:[/red]", escape(str(e)))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def setup_logging(level: str, fmt: str = "text", secrets: Callable[[], Iterable[str]] | None = None) -> None:
    """`text` for people, `json` (one object per line, with job and batch ids, secrets redacted) for log
    pipelines; see `shared.logjson`."""
    if fmt == "text" and secrets is None:
        logging.basicConfig(
            level=getattr(logging, level.upper(), logging.INFO),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        return
    from shared.logjson import setup

    try:
        setup(level, fmt, secrets)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
