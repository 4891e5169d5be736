"""Rate-limit use: how much of a provider's RPM / TPM limit the fleet uses, and how often the provider still
has to say 429. Two simulated providers enforce their limits (sliding 60 s window, like the real ones):
`rpmcap` at 600 requests/min and `tpmcap` at 60,000 tokens/min (prompt + max_tokens, as OpenAI counts).
routeyard is configured with the same limits; its shared buckets refill at 98% of them. Measured over a
steady-state minute from the farm's own record."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.deploy import close_producer, deployment
from bench.suite import Row

RPM, TPM = 600, 60_000
CONFIG = f"""
[routing]
default_class = "rpm"
[providers.rpmcap]
base_url = "sim://rpmcap"
rpm = {RPM}
[providers.tpmcap]
base_url = "sim://tpmcap"
tpm = {TPM}
[models.m-rpm]
context_length = 8000
endpoints = [{{ provider = "rpmcap", price = {{ input = "0.10", output = "0.40" }} }}]
[models.m-tpm]
context_length = 8000
endpoints = [{{ provider = "tpmcap", price = {{ input = "0.10", output = "0.40" }} }}]
[classes.rpm]
models = ["m-rpm"]
max_tokens = 64
[classes.tpm]
models = ["m-tpm"]
max_tokens = 200
"""
FARM = f"""
record_requests = true
[providers.rpmcap]
rpm = {RPM}
latency_ms = 50
jitter_ms = 20
[providers.tpmcap]
tpm = {TPM}
latency_ms = 50
jitter_ms = 20
"""


def run(seconds: float = 75.0, quick: bool = False) -> list[Row]:
    import httpx

    from shared.models import JobSpec

    if quick:
        seconds = 20.0
    with deployment("sqlite", CONFIG) as d:
        (d.tmp / "farm.toml").write_text(FARM)
        d.start_farm(farm_config=str(d.tmp / "farm.toml"), latency_ms=50)
        n_rpm = int(RPM / 60 * seconds * 1.3)
        n_tpm = int(TPM / 230 / 60 * seconds * 1.3)

        async def submit() -> None:
            p = d.producer()
            await p.submit_specs(
                [JobSpec.model_validate({"prompt": f"Classify ticket {i}.", "class": "rpm"}) for i in range(n_rpm)]
            )
            await p.submit_specs(
                [JobSpec.model_validate({"prompt": f"Summarise note {i}.", "class": "tpm"}) for i in range(n_tpm)]
            )
            await close_producer(p)

        asyncio.run(submit())
        d.start_workers(2, 64)
        time.sleep(seconds)
        assert d.farm_url is not None
        log: list[dict[str, Any]] = httpx.get(d.farm_url + "/_farm/requests", timeout=30).json()
    rows = []
    for provider, limit, unit in (("rpmcap", RPM, "requests"), ("tpmcap", TPM, "tokens")):
        reqs = sorted((r for r in log if r["provider"] == provider), key=lambda r: r["t_received"])
        start = reqs[0]["t_received"] + 5.0  # skip the first seconds (processes warming up)
        window = [r for r in reqs if start <= r["t_received"] < start + 60.0]
        served = [r for r in window if r["outcome"] == "served"]
        limited = sum(1 for r in window if r["status_code"] == 429)
        # the farm charges tokens as prompt + max_tokens requested, like OpenAI
        used = len(served) if unit == "requests" else sum(r["prompt_tokens"] + 200 for r in served)
        share = used / limit
        rows.append(
            Row(
                f"rate-limit use: {provider}, {limit:,} {unit}/min, 2 workers",
                f"{used:,} {unit} in 60 s",
                f"limit {limit:,}",
                share,
                ">= 0.95 and <= 1% 429s",
                share >= 0.95 and limited <= 0.01 * max(1, len(window)),
                note=f"{limited} of {len(window)} requests answered 429 ({limited / max(1, len(window)):.1%})",
            )
        )
    return rows
