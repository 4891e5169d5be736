"""What every step of one planning call shares."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from decimal import Decimal

from shared.catalog import Catalog, Endpoint
from worker.router.policy import MergedPolicy
from worker.router.types import Exclusion, LiveState


def job_seed(job_id: str, base: int | None = None) -> int:
    """A stable per-job seed: the same job always draws the same plan (for a given base seed)."""
    digest = hashlib.blake2b(f"{base}:{job_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(slots=True)
class Ctx:
    """What every step of one planning call shares."""

    catalog: Catalog
    policy: MergedPolicy
    live: LiveState
    used_params: frozenset[str]
    tokens_in: int
    """Upper estimate: worst cases, context checks."""
    expected_in: int
    """Expected count: the job's expected cost at each endpoint (the draw's weights, `sort: price`)."""
    max_tokens: int
    expected_out: int
    max_cost: Decimal | None
    rng: random.Random
    excluded: dict[str, Exclusion]


@dataclass(frozen=True, slots=True)
class Eligible:
    ep: Endpoint
    worst: Decimal | None
    expected: Decimal | None
    model_rank: int
