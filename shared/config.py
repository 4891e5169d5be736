"""The one TOML file that describes the world: providers, the models they serve and at what price, the task
classes, and the organisation's routing policy.

Lookup order: the explicit path, `$ROUTEYARD_CONFIG`, `./routeyard.toml`, then the built-in default
(`shared/default_config.toml`), which routes real model names at real prices to the simulated farm so a fresh
clone runs a realistic batch with no keys and no servers.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ConfigError

Wire = Literal["openai", "anthropic", "gemini"]
SIM_SCHEME = "sim://"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceOverride(_Strict):
    """Dollars per million tokens; overrides genai-prices for one endpoint."""

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cache_read: Decimal | None = Field(default=None, ge=0)


class ProviderConfig(_Strict):
    wire: Wire = "openai"
    base_url: str
    """`https://…` for a real provider, `sim://NAME` for the simulated farm."""
    key_env: str | None = None
    """Environment variable holding the pooled (credits) key. Simulated providers need none."""
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    price_source: str | None = None
    """genai-prices provider id used to price this provider's endpoints (default: the provider's name)."""
    data_collection: Literal["allow", "deny"] = "deny"
    """`allow`: the provider may train on prompts (OpenRouter's vocabulary)."""
    zdr: bool = False
    """Zero data retention: prompts are not stored at all."""
    region: str = "us"
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        return self.base_url.startswith(SIM_SCHEME)


class EndpointConfig(_Strict):
    """One provider serving one model."""

    provider: str
    upstream_model: str | None = None
    """The model name the provider expects (default: the catalog's model id)."""
    price: PriceOverride | None = None
    price_ref: str | None = None
    """Model reference for genai-prices (default: `upstream_model`)."""
    context_length: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    quantization: str | None = None
    supported_parameters: list[str] | None = None
    data_collection: Literal["allow", "deny"] | None = None
    zdr: bool | None = None
    region: str | None = None
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)


class ModelConfig(_Strict):
    context_length: int = Field(gt=0)
    endpoints: list[EndpointConfig] = Field(min_length=1)
    description: str = ""


class ClassConfig(_Strict):
    """A task-complexity class: which models may serve it and within what budget."""

    models: list[str] = Field(min_length=1)
    max_tokens: int = Field(default=1024, gt=0)
    max_cost: Decimal | None = Field(default=None, gt=0)
    """Default per-job cap on worst-case cost (dollars)."""
    over_budget: Literal["downgrade", "fail"] = "downgrade"
    expected_output_ratio: float = Field(default=0.35, gt=0, le=1)
    """Expected output tokens as a fraction of `max_tokens`, for estimates before any history exists."""
    description: str = ""


class PolicyConfig(_Strict):
    """The organisation's routing policy. A job may narrow it, never widen it."""

    allow_providers: list[str] | None = None
    ignore_providers: list[str] = Field(default_factory=list)
    data_collection: Literal["allow", "deny"] = "allow"
    zdr: bool = False
    regions: list[str] | None = None
    allow_unpriced: bool = False
    """Route to endpoints whose price is unknown (their cost is then recorded as unknown, never $0)."""
    zdr_labels: list[str] = Field(default_factory=lambda: ["sensitive"])
    """Jobs of router keys carrying any of these labels may only go to zero-data-retention endpoints."""


class WebhookConfig(_Strict):
    """Signed webhooks (Standard Webhooks). Deliveries retry on `schedule_s` (seconds after the first try;
    the spec's 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h), each delay with ±`jitter` fraction."""

    allow_private_targets: bool = False
    """Allow loopback, private and link-local targets (off: refused at submission, to prevent SSRF)."""
    schedule_s: list[float] = Field(default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0])
    jitter: float = Field(default=0.1, ge=0, le=1)
    timeout_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=32, ge=1, le=1000)
    """Deliveries in flight per worker process: a slow receiver must not hold a batch's job events back."""


class BillingConfig(_Strict):
    byok_fee_rate: Decimal = Field(default=Decimal("0.05"), ge=0, le=1)
    """Platform fee on calls made with a team's own provider key (BYOK), as a fraction of list price,
    charged as credits."""
    byok_fallback_to_pooled: bool = True
    """When a BYOK key exists but cannot serve (rate limited, refused), fall back to pooled keys."""


class CircuitConfig(_Strict):
    """Per-endpoint circuit breakers, shared by all workers through Redis."""

    consecutive_failures: int = Field(default=5, ge=1)
    """Open after this many failures in a row..."""
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    """...or when this share of calls failed in the window (with at least `min_calls` calls)."""
    window_s: float = Field(default=30.0, gt=0)
    min_calls: int = Field(default=20, ge=1)
    cooldown_s: float = Field(default=10.0, gt=0)
    """Time open before one half-open probe is let through; doubles on each failed probe up to `max_cooldown_s`."""
    max_cooldown_s: float = Field(default=120.0, gt=0)


class WorkerConfig(_Strict):
    lease_s: float = Field(default=15.0, gt=1)
    """A job claimed by a worker that stops renewing is due again after this long."""
    sweep_every_s: int = Field(default=30, ge=1, le=59)
    sweep_grace_s: float = Field(default=60.0, ge=0)
    """The sweeper leaves jobs touched this recently alone (a producer may be about to enqueue them)."""
    stale_submission_s: float = Field(default=600.0, gt=0)
    """A batch still `submitting` with no line stored for this long lost its producer: the sweeper seals it
    with the jobs it has, so it can complete."""
    rate_safety: float = Field(default=0.98, gt=0, le=1)
    """Rate-limit buckets refill at this share of the configured limit, so a provider's own window never
    sees more than its limit (fewer 429s for ~2% of throughput)."""
    health_refresh_s: float = Field(default=1.0, gt=0)
    reservation_margin_s: float = Field(default=15.0, ge=0)
    """A budget reservation outlives its call's timeout by this much before it is presumed abandoned (its
    worker died) and kept as spent at its worst case."""


class RoutingConfig(_Strict):
    default_class: str = "standard"
    max_attempts: int = Field(default=8, ge=1, le=50)
    """Ceiling on provider calls per job, across retries and fallbacks."""
    retries_per_endpoint: int = Field(default=2, ge=0, le=10)
    job_deadline_s: float = Field(default=1800.0, gt=0)
    outage_wait_s: float = Field(default=120.0, ge=0)
    """How long a job waits for endpoints with open circuits to recover before it fails with its last error
    (rate limits are waited out until the deadline: they are back-pressure, not an outage)."""
    seed: int | None = None
    """Fixes the load-balancing draw (tests, `route --explain`); unset draws fresh randomness."""
    stats_window_s: float = Field(default=600.0, gt=0)
    """Live statistics (for `sort: latency | throughput`) cover the ledger's calls of this many seconds."""
    stats_refresh_s: float = Field(default=30.0, gt=0)
    """How often each worker re-reads those statistics from the store."""


class RouteyardConfig(_Strict):
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig)
    circuits: CircuitConfig = Field(default_factory=CircuitConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    classes: dict[str, ClassConfig]

    @model_validator(mode="after")
    def _references_resolve(self) -> RouteyardConfig:
        problems: list[str] = []
        for model_id, model in self.models.items():
            seen: set[str] = set()
            for ep in model.endpoints:
                if ep.provider not in self.providers:
                    problems.append(f"model {model_id!r}: endpoint provider {ep.provider!r} is not configured")
                if ep.provider in seen:
                    problems.append(f"model {model_id!r}: provider {ep.provider!r} listed twice")
                seen.add(ep.provider)
        for class_name, cls in self.classes.items():
            for m in cls.models:
                if m not in self.models:
                    problems.append(f"class {class_name!r}: model {m!r} is not in [models]")
        if self.routing.default_class not in self.classes:
            problems.append(f"routing.default_class {self.routing.default_class!r} is not a configured class")
        for p in [*(self.policy.allow_providers or []), *self.policy.ignore_providers]:
            if p not in self.providers:
                problems.append(f"policy names unknown provider {p!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def default_config_text() -> str:
    return resources.files("shared").joinpath("default_config.toml").read_text(encoding="utf-8")


def parse_config(text: str, source: str = "<config>") -> RouteyardConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from e
    try:
        return RouteyardConfig.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            for msg in err["msg"].removeprefix("Value error, ").split("; "):
                lines.append(f"  {loc or '(top level)'}: {msg}")
        raise ConfigError(f"{source}: invalid config:\n" + "\n".join(lines)) from e


def load_config(path: Path | None = None) -> RouteyardConfig:
    """Load the config from `path`, `$ROUTEYARD_CONFIG`, `./routeyard.toml` or the built-in default."""
    from shared.settings import get_settings

    candidate = path or get_settings().config_path
    if candidate is None and Path("routeyard.toml").is_file():
        candidate = Path("routeyard.toml")
    if candidate is None:
        return parse_config(default_config_text(), "built-in default config")
    try:
        text = Path(candidate).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {candidate}: {e.strerror}") from e
    return parse_config(text, str(candidate))
