"""The catalog: every (provider, model) endpoint routeyard may call, with its price and data policy.

Built once from the config. Prices come from genai-prices for known (provider, model) pairs and from the
config where it overrides them; a price nobody knows stays `None` — routing then refuses the endpoint unless
the policy allows unpriced endpoints, and the ledger records the cost as unknown, never as $0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any, Literal

from shared.config import ClassConfig, ProviderConfig, RouteyardConfig, Wire
from shared.money import MILLION


@dataclass(frozen=True, slots=True)
class Price:
    """Dollars per million tokens."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None
    source: Literal["config", "genai-prices"]
    tiered: Any = None
    """genai-prices' ModelPrice when its prices have volume tiers: then it computes each cost itself."""

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> Decimal:
        if self.tiered is not None:
            from genai_prices import Usage

            calc = self.tiered.calc_price(
                Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached_tokens)
            )
            return Decimal(calc["total_price"])
        cached = min(cached_tokens, input_tokens) if self.cache_read is not None else 0
        total = (
            (input_tokens - cached) * self.input
            + cached * (self.cache_read or Decimal(0))
            + output_tokens * self.output
        )
        return total / MILLION


@dataclass(frozen=True, slots=True)
class Endpoint:
    slug: str
    """`provider/model`, the name routing explanations and reports use."""
    model: str
    provider: str
    upstream_model: str
    wire: Wire
    price: Price | None
    context_length: int
    max_output_tokens: int | None = None
    quantization: str | None = None
    data_collection: Literal["allow", "deny"] = "deny"
    zdr: bool = False
    region: str = "us"
    supported_parameters: frozenset[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    limits_per_model: bool = False
    """The rate limits were set on this endpoint (per model) rather than on the provider (per key)."""

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> Decimal | None:
        """Real cost of a call; `None` when the price is unknown."""
        if self.price is None:
            return None
        return self.price.cost(input_tokens, output_tokens, cached_tokens)

    def worst_case_cost(self, input_tokens: int, max_tokens: int) -> Decimal | None:
        """What a call can cost at most: every requested output token produced."""
        return self.cost(input_tokens, max_tokens)


def _genai_price(provider_id: str, model_ref: str) -> Price | None:
    from genai_prices import Usage, calc_price

    try:
        calc = calc_price(Usage(input_tokens=1, output_tokens=1), model_ref, provider_id=provider_id)
    except LookupError:
        return None
    mp = calc.model_price
    inp, out, cache = mp.input_mtok, mp.output_mtok, mp.cache_read_mtok
    if isinstance(inp, Decimal | int | None) and isinstance(out, Decimal | int | None):
        return Price(
            Decimal(inp or 0),
            Decimal(out or 0),
            Decimal(cache) if isinstance(cache, Decimal | int) else None,
            "genai-prices",
        )
    # volume tiers: plan with the base rate, let genai-prices compute each real cost
    base_in = getattr(inp, "base", inp) or 0
    base_out = getattr(out, "base", out) or 0
    return Price(Decimal(str(base_in)), Decimal(str(base_out)), None, "genai-prices", tiered=mp)


@dataclass(frozen=True)
class Catalog:
    config: RouteyardConfig
    endpoints: dict[str, Endpoint]
    by_model: dict[str, tuple[Endpoint, ...]] = field(repr=False)

    @classmethod
    def from_config(cls, config: RouteyardConfig) -> Catalog:
        endpoints: dict[str, Endpoint] = {}
        by_model: dict[str, list[Endpoint]] = {}
        for model_id, model in config.models.items():
            for ep in model.endpoints:
                prov = config.providers[ep.provider]
                upstream = ep.upstream_model or model_id
                if ep.price is not None:
                    price: Price | None = Price(ep.price.input, ep.price.output, ep.price.cache_read, "config")
                else:
                    price = _genai_price(prov.price_source or ep.provider, ep.price_ref or upstream)
                endpoint = Endpoint(
                    slug=f"{ep.provider}/{model_id}",
                    model=model_id,
                    provider=ep.provider,
                    upstream_model=upstream,
                    wire=prov.wire,
                    price=price,
                    context_length=ep.context_length or model.context_length,
                    max_output_tokens=ep.max_output_tokens,
                    quantization=ep.quantization,
                    data_collection=ep.data_collection or prov.data_collection,
                    zdr=prov.zdr if ep.zdr is None else ep.zdr,
                    region=ep.region or prov.region,
                    supported_parameters=(
                        frozenset(ep.supported_parameters) if ep.supported_parameters is not None else None
                    ),
                    rpm=ep.rpm or prov.rpm,
                    tpm=ep.tpm or prov.tpm,
                    limits_per_model=ep.rpm is not None or ep.tpm is not None,
                )
                endpoints[endpoint.slug] = endpoint
                by_model.setdefault(model_id, []).append(endpoint)
        return cls(config, endpoints, {m: tuple(eps) for m, eps in by_model.items()})

    @property
    def providers(self) -> dict[str, ProviderConfig]:
        return self.config.providers

    @property
    def classes(self) -> dict[str, ClassConfig]:
        return self.config.classes

    @cached_property
    def model_by_upstream(self) -> dict[tuple[str, str], str]:
        """(provider, upstream model name) → catalog model id, for reading provider answers back."""
        return {(e.provider, e.upstream_model): e.model for e in self.endpoints.values()}

    def endpoint(self, slug: str) -> Endpoint:
        return self.endpoints[slug]
