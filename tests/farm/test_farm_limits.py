"""rpm / tpm limits per (provider, key): really enforced, visible in headers, reset by the (fake) clock."""

from __future__ import annotations

from datetime import UTC, datetime

from farm_helpers import Connect, FakeClock, MakeFarm

from worker.farm import ProviderBehaviour
from worker.farm.limits import RateLimiter
from worker.farm.wires.openai import go_duration


async def test_rpm_is_enforced_and_the_window_slides(make_farm: MakeFarm, connect: Connect, clock: FakeClock) -> None:
    farm = make_farm(openai=ProviderBehaviour(rpm=5))
    async with connect(farm) as fc:
        answers = []
        for _ in range(5):
            answers.append(await fc.openai())
            clock.advance(1.0)
        refused = await fc.openai()
        assert [r.status_code for r in answers] == [200] * 5
        assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["4", "3", "2", "1", "0"]
        assert answers[0].headers["x-ratelimit-limit-requests"] == "5"
        assert answers[0].headers["x-ratelimit-reset-requests"] == "1m0s"

        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "requests"
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        # The first request (t=0) leaves the window at t=60; it is now t=5.
        assert refused.headers["retry-after-ms"] == "55000" and refused.headers["retry-after"] == "55"
        assert refused.headers["x-ratelimit-reset-requests"] == "59s"

        clock.advance(54.0)  # t=59: still full
        assert (await fc.openai()).status_code == 429
        clock.advance(1.0)  # t=60: the first request has slid out, one slot is free
        freed = await fc.openai()
        assert freed.status_code == 200 and freed.headers["x-ratelimit-remaining-requests"] == "0"
        assert (await fc.openai()).status_code == 429
        clock.advance(60.0)
        assert (await fc.openai()).headers["x-ratelimit-remaining-requests"] == "4"
    # Refusals are not charged: exactly the admitted requests were served.
    assert farm.record.stats["openai"].served == 7
    assert farm.record.stats["openai"].errors == {429: 3}


async def test_limits_are_per_api_key(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(openai=ProviderBehaviour(rpm=2))
    async with connect(farm) as fc:
        a = [(await fc.openai(key="key-a")).status_code for _ in range(3)]
        b = [(await fc.openai(key="key-b")).status_code for _ in range(3)]
    assert a == b == [200, 200, 429]


async def test_tpm_counts_prompt_plus_max_tokens(make_farm: MakeFarm, connect: Connect, clock: FakeClock) -> None:
    farm = make_farm(openai=ProviderBehaviour(tpm=1000))
    async with connect(farm) as fc:
        first = await fc.openai(prompt="cat", max_tokens=400)  # 3 + 4 + 1 prompt tokens + 400 = 408
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-tokens"] == "1000"
        assert first.headers["x-ratelimit-remaining-tokens"] == str(1000 - 408)
        assert "x-ratelimit-limit-requests" not in first.headers
        assert (await fc.openai(prompt="cat", max_tokens=400)).status_code == 200
        refused = await fc.openai(prompt="cat", max_tokens=400)
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens"
        assert refused.headers["x-ratelimit-remaining-tokens"] == str(1000 - 816)
        small = await fc.openai(prompt="cat", max_tokens=100)  # still fits in what is left
        assert small.status_code == 200
        too_big = await fc.openai(prompt="cat", max_tokens=5000)  # can never fit: retry after a window
        assert too_big.status_code == 429 and too_big.headers["retry-after"] == "60"
        clock.advance(60.0)
        assert (await fc.openai(prompt="cat", max_tokens=400)).status_code == 200


async def test_anthropic_limit_headers_use_rfc3339(make_farm: MakeFarm, connect: Connect, clock: FakeClock) -> None:
    farm = make_farm(anthropic=ProviderBehaviour(wire="anthropic", rpm=1, tpm=10_000))
    async with connect(farm) as fc:
        ok = await fc.anthropic()
        refused = await fc.anthropic()
    assert ok.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert ok.headers["anthropic-ratelimit-requests-remaining"] == "0"
    reset = datetime.strptime(ok.headers["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%SZ")
    assert reset.replace(tzinfo=UTC).timestamp() == clock.now + 60
    assert int(ok.headers["anthropic-ratelimit-tokens-remaining"]) < 10_000
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.headers["retry-after"] == "60"


async def test_errors_before_the_limiter_show_the_uncharged_budget(make_farm: MakeFarm, connect: Connect) -> None:
    farm = make_farm(openai=ProviderBehaviour(rpm=10, models=["gpt-4o"]))
    async with connect(farm) as fc:
        await fc.openai(model="gpt-4o")
        unknown = await fc.openai(model="nope")
    assert unknown.status_code == 404
    assert unknown.headers["x-ratelimit-remaining-requests"] == "9"


def test_limiter_never_admits_more_than_the_limit_in_any_window() -> None:
    limiter, admitted = RateLimiter(), []
    for step in range(600):  # one attempt every 0.5 s for 300 s, limit 30 per minute
        now = step * 0.5
        if limiter.check("k", 30, None, 1, now).admitted:
            admitted.append(now)
    for i, t in enumerate(admitted):
        in_window = [u for u in admitted[i:] if u < t + 60.0]
        assert len(in_window) <= 30
    assert len(admitted) == 150  # and it does admit the full limit every window


def test_go_duration() -> None:
    assert go_duration(0.0) == "0s"
    assert go_duration(0.12) == "120ms"
    assert go_duration(1.0) == "1s"
    assert go_duration(8.64) == "8.64s"
    assert go_duration(360.0) == "6m0s"
    assert go_duration(3723.5) == "1h2m3.5s"
