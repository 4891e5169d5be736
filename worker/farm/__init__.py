"""The simulated provider farm: one ASGI app that speaks like OpenAI, Anthropic and Gemini providers.

For dry runs and load tests (`routeyard simulate --port 9100`) and for our own tests and benchmarks, over
a loopback port or in process through `httpx.ASGITransport(app=farm)`. Everything it does (reply text,
token counts, faults, latency jitter) is deterministic given its seed, so runs repeat exactly, and it
keeps its own record of what it served (`farm.record`) so routeyard's accounting can be checked against it.

    farm = Farm(default_farm_config())
    farm.set_behaviour("openai", p_500=0.2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=farm), base_url="http://farm") as c:
        await c.post("/openai/v1/chat/completions", json=..., headers={"authorization": "Bearer k"})
    farm.record.stats["openai"].served
"""

from worker.farm.app import Farm
from worker.farm.behaviour import FarmConfig, ProviderBehaviour, default_farm_config
from worker.farm.record import FarmRecord, RequestRecord
from worker.farm.serve import serve

__all__ = [
    "Farm",
    "FarmConfig",
    "FarmRecord",
    "ProviderBehaviour",
    "RequestRecord",
    "default_farm_config",
    "serve",
]
