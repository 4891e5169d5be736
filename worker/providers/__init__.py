"""Provider adapters, one per wire format, behind `ProviderAdapter`. Adding a provider that speaks one of
these formats is a config entry; adding a format is one file here and one line in `ADAPTERS`."""

from __future__ import annotations

from worker.providers.anthropic import AnthropicAdapter
from worker.providers.base import ChatRequest, ChatResult, Credential, ProviderAdapter, RateLimitInfo
from worker.providers.gemini import GeminiAdapter
from worker.providers.openai_compat import OpenAICompatAdapter

ADAPTERS: dict[str, type[ProviderAdapter]] = {
    "openai": OpenAICompatAdapter,
    "anthropic": AnthropicAdapter,
    "gemini": GeminiAdapter,
}

__all__ = [
    "ADAPTERS",
    "AnthropicAdapter",
    "ChatRequest",
    "ChatResult",
    "Credential",
    "GeminiAdapter",
    "OpenAICompatAdapter",
    "ProviderAdapter",
    "RateLimitInfo",
]
