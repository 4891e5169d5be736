"""Routing commands: `models` (the catalog), `route` (a job's plan, explained) and `estimate` (what a file
will cost and how long it will take, before anything is spent)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from producer.cli.app import ConfigOption, app, config, console, err_console, settings
from producer.cli.render import errors_table
from producer.estimate import BatchEstimate, Estimator, History, ledger_history
from producer.ingest import Line, LineError, parse_line, read_lines
from producer.validate import SpecChecker
from shared.catalog import Catalog, Endpoint
from shared.errors import InputError
from shared.money import fmt_usd
from worker.router import job_seed, plan


# ---------------------------------------------------------------------------------------------- models
def _price(value: Decimal | None) -> str:
    return "unknown" if value is None else f"{value.normalize():f}"


def _tokens(n: int) -> str:
    return f"{n / 1_000_000:.3g}M" if n >= 1_000_000 else f"{n / 1000:.3g}k"


def _endpoint_json(ep: Endpoint, classes: list[str]) -> dict[str, Any]:
    return {
        "model": ep.model,
        "provider": ep.provider,
        "endpoint": ep.slug,
        "upstream_model": ep.upstream_model,
        "wire": ep.wire,
        "input_per_m": None if ep.price is None else str(ep.price.input),
        "output_per_m": None if ep.price is None else str(ep.price.output),
        "price_source": None if ep.price is None else ep.price.source,
        "context_length": ep.context_length,
        "max_output_tokens": ep.max_output_tokens,
        "quantization": ep.quantization,
        "trains_on_prompts": ep.data_collection == "allow",
        "zdr": ep.zdr,
        "region": ep.region,
        "rpm": ep.rpm,
        "tpm": ep.tpm,
        "classes": classes,
    }


@app.command("models")
def models_cmd(
    provider: list[str] = typer.Option([], "--provider", "-p", help="only this provider (repeatable)"),
    klass: str | None = typer.Option(None, "--class", help="only the models of this class"),
    as_json: bool = typer.Option(False, "--json", help="one JSON array, for scripts"),
    cfg: Path | None = ConfigOption,
) -> None:
    """The catalog: every endpoint with its price (and where the price came from), context window,
    quantization, data policy and the classes that use it."""
    catalog = Catalog.from_config(config(cfg))
    if klass is not None and klass not in catalog.classes:
        err_console.print(f"[red]unknown class {klass!r}[/red]; configured: {', '.join(catalog.classes)}")
        raise typer.Exit(2)
    unknown = sorted(set(provider) - set(catalog.providers))
    if unknown:
        known = ", ".join(catalog.providers)
        err_console.print(f"[red]unknown provider(s) {', '.join(unknown)}[/red]; configured: {known}")
        raise typer.Exit(2)
    used_by: dict[str, list[str]] = {}
    for name, cls in catalog.classes.items():
        for m in cls.models:
            used_by.setdefault(m, []).append(name)
    rows = [
        ep
        for ep in catalog.endpoints.values()
        if (not provider or ep.provider in provider) and (klass is None or klass in used_by.get(ep.model, []))
    ]
    if as_json:
        print(json.dumps([_endpoint_json(ep, used_by.get(ep.model, [])) for ep in rows], indent=2))
        return
    t = Table(
        title=f"{len(rows)} endpoint(s); prices in $ per million tokens",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for col, just in [
        ("model", "left"),
        ("provider", "left"),
        ("in $/M", "right"),
        ("out $/M", "right"),
        ("price from", "left"),
        ("context", "right"),
        ("quant", "left"),
        ("trains", "left"),
        ("ZDR", "left"),
        ("region", "left"),
        ("classes", "left"),
        ("upstream name", "left"),
    ]:
        wrap = col in ("upstream name", "classes")
        t.add_column(col, justify=just, overflow="fold", no_wrap=not wrap)  # type: ignore[arg-type]
    for ep in rows:
        t.add_row(
            ep.model,
            ep.provider,
            _price(ep.price.input if ep.price else None),
            _price(ep.price.output if ep.price else None),
            ep.price.source if ep.price else "unknown",
            _tokens(ep.context_length),
            ep.quantization or "-",
            "yes" if ep.data_collection == "allow" else "no",
            "yes" if ep.zdr else "no",
            ep.region,
            ", ".join(used_by.get(ep.model, [])) or "-",
            escape(ep.upstream_model),
        )
    console.print(t)


# ---------------------------------------------------------------------------------------------- route
def _job_lines(job: str | None, file: Path | None) -> Iterator[Line | LineError]:
    if (job is None) == (file is None):
        err_console.print("[red]give one job as a JSON argument, or --file FILE.jsonl[/red]")
        raise typer.Exit(2)
    if job is not None:
        parsed = parse_line(job.encode(), 1)
        if parsed is None:
            err_console.print("[red]the job is empty[/red]")
            raise typer.Exit(2)
        yield parsed if isinstance(parsed, LineError) else Line(1, parsed)
        return
    assert file is not None
    with file.open("rb") as f:
        yield from read_lines(f)


@app.command("route")
def route_cmd(
    job: str | None = typer.Argument(None, help='one job line as JSON, e.g. \'{"prompt": "hi", "class": "simple"}\''),
    file: Path | None = typer.Option(None, "--file", "-f", exists=True, dir_okay=False, help="every line of a JSONL"),
    explain: bool = typer.Option(True, "--explain/--brief", help="the whole plan and every exclusion, or one line"),
    seed: int | None = typer.Option(None, help="seed of the load-balancing draw (default: routing.seed, else 0)"),
    klass: str | None = typer.Option(None, "--class", help="class for lines that name none"),
    cfg: Path | None = ConfigOption,
) -> None:
    """Plan jobs as the worker would and show why: the ordered candidates with worst-case and expected cost
    and each one's odds of going first, and every endpoint left out, with its reason. Exits 1 when some job
    has no route. In a file, each line's draw is seeded from the seed and its custom_id (or line number)."""
    catalog = Catalog.from_config(config(cfg))
    checker = SpecChecker(catalog)
    base = seed if seed is not None else (catalog.config.routing.seed or 0)
    failed = 0
    for item in _job_lines(job, file):
        if isinstance(item, LineError):
            failed += 1
            console.print(f"[bold]line {item.line_no}[/bold]: [red]{item.code}[/red] {escape(item.message)}")
            continue
        spec = item.spec
        if spec.class_ is None and klass is not None:
            spec = spec.model_copy(update={"class_": klass})
        name = ("job" if file is None else f"line {item.line_no}") + (f" ({spec.custom_id})" if spec.custom_id else "")
        try:
            spec = checker.resolve(spec)
        except InputError as e:
            failed += 1
            console.print(f"[bold]{escape(name)}[/bold]: [red]{e.code}[/red] {escape(e.message)}")
            continue
        line_seed = base if file is None else job_seed(spec.custom_id or str(item.line_no), base)
        p = plan(spec, catalog, catalog.config.policy, seed=line_seed)
        if not p.candidates:
            failed += 1
        if explain:
            console.print(f"[bold]{escape(name)}[/bold]")
            console.print(escape(p.explain()), highlight=False)
            console.print()
        elif p.candidates:
            console.print(f"{escape(name)}: " + " → ".join(c.endpoint.slug for c in p.candidates), highlight=False)
        else:
            console.print(f"{escape(name)}: [red]no route[/red] — {escape(p.summary())}", highlight=False)
    if failed:
        err_console.print(f"[red]{failed} job(s) have no route[/red]")
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------- estimate
def _history(catalog: Catalog) -> History | None:
    """The ledger's recent calls, from the configured store — if there is one (nothing is created)."""
    from sqlalchemy.exc import SQLAlchemyError

    from shared.store import Store

    s = settings()
    if s.database_url is None and not (s.home / "routeyard.db").is_file():
        return None
    store = Store.open(s.resolved_database_url(), create=False)
    try:
        return store.read_sync(ledger_history(catalog))
    except SQLAlchemyError as e:
        err_console.print(f"[yellow]no history from the store ({type(e).__name__}); using priors[/yellow]")
        return None
    finally:
        store.close_sync()


def _estimate_table(est: BatchEstimate) -> Table:
    t = Table(title=f"{est.jobs} job(s): expected traffic and cost of the first call", title_justify="left")
    for col, just in [
        ("class", "left"),
        ("model", "left"),
        ("provider", "left"),
        ("jobs", "right"),
        ("input tok", "right"),
        ("output tok", "right"),
        ("expected", "right"),
        ("worst case", "right"),
    ]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    t.caption = "worst case: every requested token produced (per class: at each job's dearest candidate)"
    for r in est.rows:
        expected = fmt_usd(r.expected_cost, 6) + (f" + {r.unpriced_jobs:.1f} unpriced" if r.unpriced_jobs else "")
        t.add_row(
            r.class_name,
            r.model,
            r.provider,
            f"{r.jobs:.1f}",
            f"{r.input_tokens:,.0f}",
            f"{r.output_tokens:,.0f}",
            expected,
            fmt_usd(r.worst_case_cost, 6),
        )
    t.add_section()
    for cls, worst in est.worst_by_class.items():
        mine = [r for r in est.rows if r.class_name == cls]
        t.add_row(
            f"{cls} (all)",
            "",
            "",
            f"{sum(r.jobs for r in mine):.0f}",
            f"{sum(r.input_tokens for r in mine):,.0f}",
            f"{sum(r.output_tokens for r in mine):,.0f}",
            fmt_usd(sum((r.expected_cost for r in mine), Decimal(0)), 6),
            fmt_usd(worst, 6),
        )
    t.add_section()
    t.add_row(
        "total",
        "",
        "",
        str(est.jobs),
        f"{sum(r.input_tokens for r in est.rows):,.0f}",
        f"{sum(r.output_tokens for r in est.rows):,.0f}",
        fmt_usd(est.expected_cost, 6) + (f" + {est.unpriced_jobs:.1f} unpriced" if est.unpriced_jobs else ""),
        fmt_usd(est.worst_case_cost, 6),
    )
    return t


@app.command("estimate")
def estimate_cmd(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL: OpenAI batch lines or plain lines"),
    klass: str | None = typer.Option(None, "--class", help="class for lines that name none"),
    concurrency: int = typer.Option(256, min=1, help="calls in flight across the workers"),
    history: bool = typer.Option(True, "--history/--no-history", help="learn from the store's recorded calls"),
    as_json: bool = typer.Option(False, "--json"),
    cfg: Path | None = ConfigOption,
) -> None:
    """Expected and worst-case cost of a file by class, model and provider, and the expected wall time under
    the configured rate limits — before anything is spent. Uses the ledger's history when the store has one."""
    catalog = Catalog.from_config(config(cfg))
    if klass is not None and klass not in catalog.classes:
        err_console.print(f"[red]unknown class {klass!r}[/red]")
        raise typer.Exit(2)
    hist = _history(catalog) if history else None
    with file.open("rb") as f:
        est = Estimator(catalog, hist, concurrency=concurrency).estimate(read_lines(f), default_class=klass)
    if as_json:
        print(json.dumps(est.to_json(), indent=2))
    else:
        if est.errors:
            err_console.print(errors_table(est.errors))
        for n in est.no_route:
            err_console.print(f"line {n.line_no}: [red]no route[/red] {escape(n.reason)}")
        console.print(_estimate_table(est))
        console.print(
            f"expected cost {fmt_usd(est.expected_cost, 6)}"
            + (f" + {est.unpriced_jobs:.1f} job(s) at unknown prices" if est.unpriced_jobs else "")
            + f"; worst case {fmt_usd(est.worst_case_cost, 6)}"
        )
        console.print(f"expected wall time ≥ {est.wall.seconds:,.1f}s (bound by {escape(est.wall.bottleneck)})")
        for what, how in est.basis.items():
            console.print(f"  {what}: {escape(how)}", style="dim", highlight=False)
    if est.jobs == 0:
        raise typer.Exit(1)
