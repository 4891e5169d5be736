"""Fixtures for the farm tests (helpers live in `farm_helpers`)."""

from __future__ import annotations

import pytest
from farm_helpers import Connect, FakeClock, MakeFarm, connect_to, quiet_config

from worker.farm import Farm, ProviderBehaviour


@pytest.fixture
def connect() -> Connect:
    """`async with connect(farm) as fc:` — a `FarmClient` talking to `farm` in process."""
    return connect_to


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_farm(clock: FakeClock) -> MakeFarm:
    """`make_farm(seed=0, record_requests=True, **providers)`: a quiet farm on the fake clock."""

    def make(seed: int = 0, record_requests: bool = True, **providers: ProviderBehaviour) -> Farm:
        config = quiet_config(seed, **providers).model_copy(update={"record_requests": record_requests})
        return Farm(config, clock=clock)

    return make


@pytest.fixture
def farm(clock: FakeClock) -> Farm:
    """One quiet provider per wire (openai, anthropic, google), on the fake clock."""
    return Farm(quiet_config(), clock=clock)
