"""Requests-per-minute and tokens-per-minute limits, per (provider, API key), over a sliding 60 s window.

A sliding log rather than a token bucket: it guarantees that no 60 s window ever admits more than the limit,
which is the property a router's pacing tests want to assert. Only admitted requests consume budget (a
client hammering through its 429s recovers as soon as the window slides). Time comes from the farm's
injectable clock, so tests advance a fake clock instead of sleeping.

Reset times follow OpenAI's and Anthropic's documented meaning: when the budget is *fully* replenished.
`retry_after_s` on a refusal is sooner: when enough of the window has slid for this request to fit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Budget:
    limit: int
    remaining: int
    reset_s: float
    """Seconds until `remaining == limit` again."""


@dataclass(frozen=True, slots=True)
class Verdict:
    admitted: bool
    requests: Budget | None  # None when the provider sets no such limit
    tokens: Budget | None
    refused_by: str | None = None  # "requests" or "tokens"
    retry_after_s: float = 0.0
    used: int = 0  # of the refusing limit, for the error message
    requested: int = 0


class _Window:
    """Weighted events inside the last `WINDOW_S` seconds, oldest first, with their running total."""

    __slots__ = ("events", "used")

    def __init__(self) -> None:
        self.events: deque[tuple[float, int]] = deque()
        self.used = 0

    def slide(self, now: float) -> None:
        horizon = now - WINDOW_S
        events = self.events
        while events and events[0][0] <= horizon:
            self.used -= events.popleft()[1]

    def budget(self, limit: int, now: float) -> Budget:
        reset = self.events[-1][0] + WINDOW_S - now if self.events else 0.0
        return Budget(limit, max(0, limit - self.used), max(0.0, reset))

    def wait_for(self, limit: int, need: int, now: float) -> float:
        """Seconds until `need` more fits under `limit` (a full window if it never can)."""
        if need > limit:
            return WINDOW_S
        excess = self.used + need - limit
        for t, weight in self.events:
            excess -= weight
            if excess <= 0:
                return max(0.0, t + WINDOW_S - now)
        return 0.0


class RateLimiter:
    """One provider's limits, for every API key that calls it."""

    def __init__(self) -> None:
        self._requests: dict[str | None, _Window] = {}
        self._tokens: dict[str | None, _Window] = {}

    def check(self, key: str | None, rpm: int | None, tpm: int | None, tokens: int, now: float) -> Verdict:
        """Admit (and charge) one request of `tokens` tokens, or refuse it without charging anything."""
        req_w = self._window(self._requests, key, now) if rpm is not None else None
        tok_w = self._window(self._tokens, key, now) if tpm is not None else None
        refused_by, retry, used, requested = None, 0.0, 0, 0
        if req_w is not None and rpm is not None and req_w.used + 1 > rpm:
            refused_by, retry, used, requested = "requests", req_w.wait_for(rpm, 1, now), req_w.used, 1
        elif tok_w is not None and tpm is not None and tok_w.used + tokens > tpm:
            refused_by, used, requested = "tokens", tok_w.used, tokens
            retry = tok_w.wait_for(tpm, tokens, now)
        if refused_by is None:
            if req_w is not None:
                req_w.events.append((now, 1))
                req_w.used += 1
            if tok_w is not None:
                tok_w.events.append((now, tokens))
                tok_w.used += tokens
        return Verdict(
            admitted=refused_by is None,
            requests=req_w.budget(rpm, now) if req_w is not None and rpm is not None else None,
            tokens=tok_w.budget(tpm, now) if tok_w is not None and tpm is not None else None,
            refused_by=refused_by,
            retry_after_s=retry,
            used=used,
            requested=requested,
        )

    def peek(self, key: str | None, rpm: int | None, tpm: int | None, now: float) -> Verdict:
        """The budgets as they stand, charging nothing (for answers that never reached the limiter)."""
        req_w = self._window(self._requests, key, now) if rpm is not None else None
        tok_w = self._window(self._tokens, key, now) if tpm is not None else None
        return Verdict(
            admitted=True,
            requests=req_w.budget(rpm, now) if req_w is not None and rpm is not None else None,
            tokens=tok_w.budget(tpm, now) if tok_w is not None and tpm is not None else None,
        )

    def reset(self) -> None:
        self._requests.clear()
        self._tokens.clear()

    @staticmethod
    def _window(windows: dict[str | None, _Window], key: str | None, now: float) -> _Window:
        window = windows.get(key)
        if window is None:
            window = windows[key] = _Window()
        else:
            window.slide(now)
        return window
