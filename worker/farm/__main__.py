"""`python -m worker.farm --port 9100 [--config farm.toml]`: run the simulated provider farm."""

from __future__ import annotations

import argparse

from worker.farm.behaviour import FarmConfig, default_farm_config
from worker.farm.serve import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.farm", description="Simulated LLM provider farm.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--config", help="a farm TOML file (default: the built-in providers)")
    parser.add_argument("--seed", type=int, help="override the config's seed")
    parser.add_argument("--no-request-log", action="store_true", help="keep aggregates only (long benchmarks)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    config = FarmConfig.from_toml(args.config) if args.config else default_farm_config()
    updates: dict[str, object] = {}
    if args.seed is not None:
        updates["seed"] = args.seed
    if args.no_request_log:
        updates["record_requests"] = False
    if updates:
        config = config.model_copy(update=updates)
    serve(config, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
