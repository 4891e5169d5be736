"""The benchmark suite's shape: every benchmark returns rows; `python -m bench` prints one table.

A row's ratio is always against a baseline measured in the same run (this machine is shared and noisy), or
against a configured figure (a rate limit, an ideal rate) that does not drift."""

from __future__ import annotations

import datetime as dt
import platform
from dataclasses import dataclass


@dataclass
class Row:
    what: str
    result: str
    baseline: str
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""


def render(rows: list[Row]) -> str:
    header = ("benchmark", "result", "baseline (same run)", "ratio", "target", "met")
    body = [
        (
            r.what,
            r.result,
            r.baseline,
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            r.target,
            "-" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    lines = [
        f"routeyard benchmarks, {dt.date.today()}, {platform.node()} ({_cores()} cores)",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    notes = [f"- {r.what}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + (["", *notes] if notes else []))


def _cores() -> int:
    import os

    return os.cpu_count() or 0
