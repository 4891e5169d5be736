"""What a job is: the spec a producer validates and stores, and the worker executes.

The field names follow the OpenAI chat-completions body and OpenRouter's routing vocabulary (`models`,
`provider{order, only, ignore, sort, max_price, data_collection, zdr, quantizations, require_parameters}`),
so request bodies written for either service work unchanged. routeyard's own fields: `class`, `priority`,
`max_cost`, `custom_id`, `metadata`, `webhook_url`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import IntEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from shared.money import MAX_USD


def check_metadata(v: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's limits on `metadata`, so jobs and batches move between the two unchanged."""
    if v is not None:
        if len(v) > 16:
            raise ValueError("metadata holds at most 16 keys")
        for key, value in v.items():
            if len(key) > 64 or len(value) > 512:
                raise ValueError("metadata keys are at most 64 characters and values 512")
    return v


class Priority(IntEnum):
    """Lower runs first. Strict between levels; fair share between batches within a level."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


def _priority(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return Priority[value.strip().upper()]
        except KeyError:
            raise ValueError("priority must be 'high', 'normal' or 'low'") from None
    return value


PriorityField = Annotated[Priority, BeforeValidator(_priority)]


class Message(BaseModel):
    """A chat message. Content may be text or a list of parts; other OpenAI fields pass through."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text (parts joined), for token estimates and non-OpenAI wire formats."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(str(p.get("text", "")) for p in self.content if isinstance(p, dict))


class MaxPrice(BaseModel):
    """The most the job will pay (OpenRouter's fields): `prompt` and `completion` in dollars per million tokens,
    `request` per call, `image` per image, `audio` per audio unit. An endpoint above any of them is excluded."""

    model_config = ConfigDict(extra="forbid")

    prompt: Decimal | None = Field(default=None, ge=0)
    completion: Decimal | None = Field(default=None, ge=0)
    request: Decimal | None = Field(default=None, ge=0)
    image: Decimal | None = Field(default=None, ge=0)
    audio: Decimal | None = Field(default=None, ge=0)


SortBy = Literal["price", "latency", "throughput"]
QUANTIZATIONS = ("int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32", "unknown")
"""OpenRouter's quantization levels; `unknown` matches endpoints that do not declare one."""


class SortOptions(BaseModel):
    """`sort` as an object: `partition: "model"` (default) sorts each model's endpoints and keeps the model
    fallback order; `"none"` sorts the endpoints of every requested model together."""

    model_config = ConfigDict(extra="forbid")

    by: SortBy
    partition: Literal["model", "none"] = "model"


class PercentileCutoffs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p50: float | None = Field(default=None, gt=0)
    p75: float | None = Field(default=None, gt=0)
    p90: float | None = Field(default=None, gt=0)
    p99: float | None = Field(default=None, gt=0)

    def values(self) -> list[float]:
        return [v for v in (self.p50, self.p75, self.p90, self.p99) if v is not None]


def _slugs(value: Any) -> Any:
    """Provider slugs compare case-insensitively, as OpenRouter's do."""
    if isinstance(value, list):
        return [v.strip().lower() if isinstance(v, str) else v for v in value]
    return value


Slugs = Annotated[list[str], BeforeValidator(_slugs)]


class ProviderPreferences(BaseModel):
    """OpenRouter's `provider` object. `order`, `only` and `ignore` name providers (`"groq"`: all its
    endpoints) or single endpoints (`"groq/llama-3.3-70b-instruct"`)."""

    model_config = ConfigDict(extra="forbid")

    order: Slugs | None = None
    allow_fallbacks: bool = True
    only: Slugs | None = None
    ignore: Slugs | None = None
    sort: SortBy | SortOptions | None = None
    max_price: MaxPrice | None = None
    data_collection: Literal["allow", "deny"] | None = None
    zdr: bool | None = None
    quantizations: list[str] | None = None
    require_parameters: bool = False
    preferred_min_throughput: float | PercentileCutoffs | None = None
    """Tokens per second; endpoints measured below it go after the others (never excluded)."""
    preferred_max_latency: float | PercentileCutoffs | None = None
    """Seconds; endpoints measured above it go after the others (never excluded)."""
    enforce_distillable_text: bool | None = None
    """Accepted for compatibility; `true` is refused at submission (the catalog has no distillation data)."""

    @field_validator("quantizations", mode="before")
    @classmethod
    def _known_quantizations(cls, v: Any) -> Any:
        if isinstance(v, list):
            v = [q.strip().lower() if isinstance(q, str) else q for q in v]
            bad = [q for q in v if q not in QUANTIZATIONS]
            if bad:
                raise ValueError(f"unknown quantization(s) {bad}; use {', '.join(QUANTIZATIONS)}")
        return v

    @field_validator("preferred_min_throughput", "preferred_max_latency", mode="before")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool) and v <= 0:
            raise ValueError("must be positive")
        return v

    @property
    def sort_by(self) -> SortBy | None:
        return self.sort.by if isinstance(self.sort, SortOptions) else self.sort

    @property
    def sort_partition(self) -> Literal["model", "none"]:
        return self.sort.partition if isinstance(self.sort, SortOptions) else "model"


SAMPLING_PARAMS = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "logit_bias",
    "reasoning_effort",
    "user",
)


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=False)

    custom_id: str | None = Field(default=None, min_length=1, max_length=256)
    prompt: str | None = None
    messages: list[Message] | None = None
    class_: str | None = Field(default=None, alias="class", min_length=1, max_length=64)
    model: str | None = None
    """One model, as in an OpenAI body: the same as `models: [model]`."""
    models: list[str] | None = None
    provider: ProviderPreferences | None = None
    priority: PriorityField = Priority.NORMAL
    max_tokens: int | None = Field(default=None, gt=0, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logit_bias: dict[str, float] | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    user: str | None = Field(default=None, max_length=256)
    max_cost: Decimal | None = Field(default=None, gt=0, le=MAX_USD)
    """Cap on this job's worst-case cost in dollars (default: the class's)."""
    metadata: dict[str, str] | None = None
    webhook_url: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _one_input(self) -> JobSpec:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("'prompt' is empty")
        if self.messages is not None:
            if not self.messages:
                raise ValueError("'messages' is empty")
            if all(m.role in ("system", "developer") for m in self.messages):
                raise ValueError("'messages' has no user message")
        return self

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return check_metadata(v)

    @field_validator("models")
    @classmethod
    def _models_nonempty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("'models' is empty")
        return v

    def chat_messages(self) -> list[Message]:
        if self.messages is not None:
            return self.messages
        return [Message(role="user", content=self.prompt)]

    def requested_models(self) -> list[str] | None:
        """The models to try, in order: `model` first, then `models` (OpenRouter: `models` are the fallbacks
        of `model`, or the whole ordered list when `model` is absent). Duplicates are dropped."""
        names = ([self.model] if self.model is not None else []) + (self.models or [])
        return list(dict.fromkeys(names)) or None

    def sampling_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in SAMPLING_PARAMS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def prompt_chars(self) -> int:
        return sum(len(m.text()) for m in self.chat_messages())

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True, by_alias=True, exclude_defaults=False)


_WORDS = re.compile(r"[A-Za-z0-9]+")
_PUNCT = re.compile(r"[^\sA-Za-z0-9]")


def estimate_input_tokens(spec: JobSpec) -> int:
    """An upper bound on input tokens without a tokenizer, for worst-case reservations and context checks.

    BPE tokenizers give a word of n letters at most ceil(n / 4) + 1 tokens in practice, every punctuation
    mark or other-script character about one, and the chat format a few tokens per message. Bounding each
    term from above keeps reservations above real costs, so a budget cannot be overspent by a prompt that
    tokenizes worse than average (short words, code, non-Latin scripts)."""
    tokens = 3
    for m in spec.chat_messages():
        text = m.text()
        word_chars = 0
        words = 0
        for w in _WORDS.findall(text):
            words += 1
            word_chars += len(w)
        tokens += 4 + (word_chars + 3) // 4 + words + len(_PUNCT.findall(text))
    return tokens


_WORD = re.compile(r"[A-Za-z]+")
_NUMBER = re.compile(r"[0-9]+")
_SYMBOL = re.compile(r"[^A-Za-z0-9\s]")
_BREAK = re.compile(r"\s{2,}|[^\S ]")
_ASTRAL = re.compile(r"[\U00010000-\U0010FFFF]")
CHAT_MESSAGE_TOKENS = 4
"""Tokens each chat message costs beyond its text (role and separators), per OpenAI's cookbook."""
CHAT_PRIMING_TOKENS = 3
"""Tokens that prime the assistant's reply."""


def text_tokens(text: str) -> float:
    """An unbiased-leaning token count of `text` for a modern BPE tokenizer (cl100k/o200k-like), built from
    the pieces such tokenizers split text into before merging:

    - a run of ASCII letters (a word): one token per 6 letters, rounded up — BPE vocabularies hold most
      English words of up to ~6 letters whole and split longer ones (~1.1 tokens a word in prose);
    - a run of digits: one token per 3 digits (cl100k and o200k split numbers into groups of at most three);
    - any other non-space character (punctuation, symbols, CJK, accented letters): one token, two outside
      the Basic Multilingual Plane (emoji);
    - a whitespace run other than a single space (newlines, indentation): one token; a single space merges
      into the next word.

    English prose comes out near the usual ~4 characters a token ("The quick brown fox jumps over the lazy
    dog." → 10, as cl100k counts it). Tokenizers differ between model families; `routeyard estimate`
    rescales this per model from the ledger's recorded input tokens once it has history.
    """
    n = sum(-(-len(w) // 6) for w in _WORD.findall(text))
    n += sum(-(-len(d) // 3) for d in _NUMBER.findall(text))
    n += len(_SYMBOL.findall(text)) + len(_BREAK.findall(text))
    if not text.isascii():
        n += len(_ASTRAL.findall(text))
    return float(n)


def expected_input_tokens(spec: JobSpec) -> float:
    """The expected prompt tokens of a job (for expected cost), unlike `estimate_input_tokens`, which errs high
    on purpose (reservations, context checks)."""
    msgs = spec.chat_messages()
    return CHAT_PRIMING_TOKENS + sum(CHAT_MESSAGE_TOKENS + text_tokens(m.text()) for m in msgs)
