"""The benchmark suite: `.venv/bin/python -m bench [--only NAME ...] [--quick]` prints one table of ratios
against baselines measured in the same run. See BENCHMARKS.md for what each measures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.suite import Row, render

BENCHES = ("overhead", "latency", "ratelimit", "priority", "ingest", "redis_cost", "soak", "scaleout")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES))
    ap.add_argument("--quick", action="store_true", help="smaller runs (for a smoke check, not for the record)")
    args = ap.parse_args()
    rows: list[Row] = []
    for name in args.only:
        module = __import__(f"bench.{name}", fromlist=["run"])
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows += module.run(**({"quick": True} if args.quick and "quick" in module.run.__code__.co_varnames else {}))
        print(render(rows), file=sys.stderr, flush=True)
    print(render(rows))


if __name__ == "__main__":
    main()
