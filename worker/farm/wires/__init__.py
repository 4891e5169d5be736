"""The wire formats the farm speaks, by the name a `ProviderBehaviour.wire` uses."""

from __future__ import annotations

from worker.farm.wires.anthropic import AnthropicWire
from worker.farm.wires.base import FarmError, Parsed, Route, Wire
from worker.farm.wires.gemini import GeminiWire
from worker.farm.wires.openai import OpenAIWire

WIRES: dict[str, Wire] = {"openai": OpenAIWire(), "anthropic": AnthropicWire(), "gemini": GeminiWire()}

__all__ = ["WIRES", "FarmError", "Parsed", "Route", "Wire"]
