"""Deterministic fault and latency decisions.

Each request gets two uniform numbers from a hash of (farm seed, provider, discriminator). The
discriminator is the request's `x-routeyard-attempt-id` when it sends one, so a retried attempt id meets the
same fate and a test can replay it; otherwise it is the provider's request counter, so a fresh farm
replays the same sequence. The fault is picked by where the first number falls among the configured rates
(laid end to end in [0, 1)); the second drives latency jitter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from worker.farm.behaviour import ProviderBehaviour

Fault = Literal["429", "500", "503", "hang"]

_SCALE = 2.0**-64


@dataclass(frozen=True, slots=True)
class Draw:
    u_fault: float
    u_jitter: float


def draw(seed: int, provider: str, discriminator: str) -> Draw:
    digest = hashlib.blake2b(f"{seed}\x00{provider}\x00{discriminator}".encode(), digest_size=16).digest()
    return Draw(int.from_bytes(digest[:8]) * _SCALE, int.from_bytes(digest[8:]) * _SCALE)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """A behaviour's fault rates as cumulative thresholds, computed once per behaviour."""

    thresholds: tuple[tuple[float, Fault], ...]

    @classmethod
    def of(cls, behaviour: ProviderBehaviour) -> FaultPlan:
        edges: list[tuple[float, Fault]] = []
        total = 0.0
        rates: tuple[tuple[float, Fault], ...] = (
            (behaviour.p_429, "429"),
            (behaviour.p_500, "500"),
            (behaviour.p_503, "503"),
            (behaviour.p_hang, "hang"),
        )
        for rate, fault in rates:
            if rate > 0:
                total += rate
                edges.append((total, fault))
        return cls(tuple(edges))

    def pick(self, u: float) -> Fault | None:
        for edge, fault in self.thresholds:
            if u < edge:
                return fault
        return None


def latency_s(behaviour: ProviderBehaviour, u_jitter: float, output_tokens: int) -> float:
    """Base latency ± jitter plus per-output-token time, in seconds, never negative."""
    ms = behaviour.latency_ms + behaviour.ms_per_output_token * output_tokens
    if behaviour.jitter_ms:
        ms += (2.0 * u_jitter - 1.0) * behaviour.jitter_ms
    return max(0.0, ms) / 1000.0
