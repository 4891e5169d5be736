"""How each simulated provider behaves: the farm's configuration.

These models are validated once, when a config is loaded or a behaviour is patched, never per request:
the request path reads precomputed state built from them (see `state.py`). `extra="forbid"` everywhere,
so a typo in a TOML file (`p500 = 0.2`) fails loudly instead of silently simulating a healthy provider.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Wire = Literal["openai", "anthropic", "gemini"]

DEFAULT_CONTEXT_LENGTH = 128_000
ANY_MODEL = "*"

# A provider name is the first path segment (`/{provider}/v1/...`); `_` prefixes are reserved for `/_farm`.
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ProviderBehaviour(BaseModel):
    """One simulated provider: its wire format, what it serves, how slow it is and how it fails.

    Frozen: the farm precomputes request-path state from a behaviour, so changes go through
    `Farm.set_behaviour` (or `PATCH /_farm/providers/{name}`), which swaps in a validated copy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    wire: Wire = "openai"
    models: list[str] = Field(default_factory=lambda: [ANY_MODEL])
    """Model names served; `"*"` serves any name. An unknown model answers 404."""
    context_length: dict[str, int] = Field(default_factory=lambda: {ANY_MODEL: DEFAULT_CONTEXT_LENGTH})
    """Per-model context windows; the `"*"` entry (or 128k when absent) is the default."""

    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    """Uniform ± around `latency_ms`, drawn deterministically per request; the sum never goes below 0."""
    ms_per_output_token: float = Field(default=0.0, ge=0)

    p_429: float = Field(default=0.0, ge=0, le=1)
    p_500: float = Field(default=0.0, ge=0, le=1)
    p_503: float = Field(default=0.0, ge=0, le=1)
    """Overloaded: 503 on OpenAI and Gemini wires, 529 `overloaded_error` on the Anthropic wire."""
    p_hang: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: float = Field(default=1.0, ge=0)
    """The `retry-after` an injected 429 advertises (limiter 429s compute their own)."""
    hang_s: float = Field(default=3600.0, ge=0)
    """How long a hung request sleeps: by default long enough that the client gives up first."""
    down: bool = False
    """Every request answers 503 (Anthropic: 529) at once, before auth or validation."""

    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    """Per (provider, API key) over a sliding 60 s window. A request's tokens are its prompt plus the
    max output it asked for (1024, or what is left of the context window, when it sets none)."""
    api_keys: list[str] | None = None
    """Accepted keys; `None` accepts any non-empty key. A missing key always answers 401."""

    @field_validator("context_length")
    @classmethod
    def _positive_windows(cls, value: dict[str, int]) -> dict[str, int]:
        bad = [name for name, size in value.items() if size <= 0]
        if bad:
            raise ValueError(f"context_length must be positive (bad: {', '.join(bad)})")
        return value

    @model_validator(mode="after")
    def _fault_rates_fit(self) -> Self:
        # One uniform draw decides the fault, so the rates are slices of [0, 1) and must fit in it.
        total = self.p_429 + self.p_500 + self.p_503 + self.p_hang
        if total > 1.0 + 1e-9:
            raise ValueError(f"p_429 + p_500 + p_503 + p_hang must be <= 1 (got {total:g})")
        return self

    def context_for(self, model: str) -> int:
        """The context window of `model`: its own entry, else the `"*"` entry, else 128k."""
        found = self.context_length.get(model)
        if found is None:
            found = self.context_length.get(ANY_MODEL, DEFAULT_CONTEXT_LENGTH)
        return found

    def patched(self, changes: dict[str, Any]) -> ProviderBehaviour:
        """A validated copy with `changes` merged in (raises `pydantic.ValidationError`)."""
        return ProviderBehaviour.model_validate({**self.model_dump(), **changes})


class FarmConfig(BaseModel):
    """The whole farm: a seed for every deterministic decision and the named providers."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    providers: dict[str, ProviderBehaviour] = Field(default_factory=dict)
    record_requests: bool = True
    """Keep the full per-request log; turn off for long benchmarks (aggregates are kept either way)."""

    @field_validator("providers")
    @classmethod
    def _path_safe_names(cls, value: dict[str, ProviderBehaviour]) -> dict[str, ProviderBehaviour]:
        bad = [name for name in value if not _PROVIDER_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"provider names must match {_PROVIDER_NAME.pattern} (bad: {', '.join(bad)})")
        return value

    @classmethod
    def from_toml(cls, path: str | Path) -> FarmConfig:
        """Load `seed`, `record_requests` and `[providers.<name>]` tables from a TOML file."""
        with Path(path).open("rb") as f:
            return cls.model_validate(tomllib.load(f))


_DEFAULT_PROVIDERS: dict[str, Wire] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gemini",
    # OpenAI-compatible hosts of open and resold models. Azure and Bedrock really speak their own
    # dialects; the farm simplifies them to the OpenAI wire.
    "deepinfra": "openai",
    "together": "openai",
    "groq": "openai",
    "fireworks": "openai",
    "azure": "openai",
    "bedrock": "openai",
}


def default_farm_config(seed: int = 0) -> FarmConfig:
    """Every built-in provider, healthy, serving any model in 50 ms ± 20 ms, with no limits."""
    return FarmConfig(
        seed=seed,
        providers={
            name: ProviderBehaviour(wire=wire, latency_ms=50.0, jitter_ms=20.0)
            for name, wire in _DEFAULT_PROVIDERS.items()
        },
    )
