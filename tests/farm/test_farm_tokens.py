"""Token counting and reply generation: deterministic, exact, and shaped like real usage."""

from __future__ import annotations

import statistics

import pytest

from worker.farm.tokens import DEFAULT_MAX_OUTPUT, count_prompt_tokens, count_tokens, reply_for


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("cat", 1),
        ("cats", 1),
        ("kittens", 2),  # one token per started 4 characters of a word
        ("a cat", 2),  # a single space between words is free
        ("a  cat", 3),  # a longer whitespace run costs one
        ("a\ncat", 3),
        ("Hello, world!", 6),  # punctuation costs one each
        ("你好世界", 4),  # CJK: one per character
        ("ok 😀", 3),  # outside the BMP: two
    ],
)
def test_count_tokens_rules(text: str, tokens: int) -> None:
    assert count_tokens(text) == tokens


def test_count_tokens_is_not_len_over_4() -> None:
    words = "a " * 100  # 200 characters, 100 one-letter words
    assert count_tokens(words) == 100
    assert count_tokens("x" * 4000) == 1000


def test_prompt_overhead_follows_openai_convention() -> None:
    assert count_prompt_tokens([], 0) == 3
    assert count_prompt_tokens(["cat"], 1) == 3 + 4 + 1
    assert count_prompt_tokens(["cat", "dog"], 2) == 3 + 8 + 2


@pytest.mark.parametrize("cap", [1, 2, 3, 7, 64, 500, 4096, 20_000])
def test_reply_has_exactly_the_tokens_it_claims(cap: int) -> None:
    for i in range(30):
        reply = reply_for("model", f"prompt {i}", cap)
        assert 1 <= reply.tokens <= cap
        assert count_tokens(reply.text) == reply.tokens
        assert reply.truncated == (reply.tokens == cap)
        assert reply.text[:1].isupper()


def test_reply_is_deterministic_and_depends_on_model_and_prompt() -> None:
    assert reply_for("m", "p", 300) == reply_for("m", "p", 300)
    assert reply_for("m", "p", 300).text != reply_for("m2", "p", 300).text
    assert reply_for("m", "p", 300).text != reply_for("m", "q", 300).text
    # A larger cap lengthens a reply, never rewrites its beginning.
    short, long = reply_for("m", "p", 300), reply_for("m", "p", 3000)
    assert long.text.startswith(short.text.rstrip(".,"))


def test_reply_lengths_are_spread_around_a_third_of_the_cap() -> None:
    cap = 1000
    lengths = [reply_for("m", f"prompt {i}", cap).tokens for i in range(4000)]
    fractions = [n / cap for n in lengths]
    assert 0.30 < statistics.mean(fractions) < 0.42
    assert min(fractions) >= 0.10
    truncated = sum(n == cap for n in lengths) / len(lengths)
    assert 0.02 < truncated < 0.09  # some answers run into the cap, so "length" finishes happen
    untruncated = [f for f in fractions if f < 1]
    assert max(untruncated) <= 0.70
    assert statistics.pstdev(untruncated) > 0.08


def test_default_cap() -> None:
    assert DEFAULT_MAX_OUTPUT == 1024
