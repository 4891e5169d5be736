"""Deterministic token counts and reply text, so every test and benchmark can predict usage exactly.

`count_tokens` imitates a BPE tokenizer's shape without its tables: ASCII letter/digit runs cost one token
per four characters (rounded up), a single space between words is free (BPE merges it into the next word),
any other whitespace run costs one, and every other character (punctuation, CJK, accented letters) costs
one, or two outside the Basic Multilingual Plane (emoji). Same rules for all three wire formats.

Reply text is sliced out of a pre-built pool of one-token pieces (" word", ",", "."), so a reply of exactly
`n` tokens costs one string slice, and `count_tokens(reply) == n` by construction.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from math import sqrt

MESSAGE_OVERHEAD = 4  # tokens per message (role and separators), as in OpenAI's cookbook
REPLY_PRIMING = 3  # tokens that prime the assistant's reply
DEFAULT_MAX_OUTPUT = 1024  # the cap when a request sets no max_tokens

# Reply lengths are a fraction of the cap, triangular on [10%, 70%] peaking at 20% (mean ~33%), except a
# deterministic `_TRUNCATED_SHARE` of prompts whose answer would overrun the cap and so hits it: without
# those no reply would ever finish with "length", and clients must be tested against that too.
_LOW, _PEAK, _HIGH = 0.10, 0.20, 0.70
_TRUNCATED_SHARE = 0.05

# Each match is one token: a chunk of up to 4 characters of a letter/digit run (so a run costs
# ceil(len / 4)), any other non-space character, or a whitespace run other than a lone space.
_ONE_TOKEN = re.compile(r"[A-Za-z0-9]{1,4}|[^A-Za-z0-9\s]|\s{2,}|[^\S ]")
_ASTRAL = re.compile(r"[\U00010000-\U0010FFFF]")  # these cost a second token
_CACHED_UP_TO = 4096  # characters: repeated short texts (system prompts) are counted once


def count_tokens(text: str) -> int:
    """Approximate BPE token count of `text` (deterministic; not len/4)."""
    if len(text) <= _CACHED_UP_TO:
        return _count_cached(text)
    return _count(text)


def _count(text: str) -> int:
    n = len(_ONE_TOKEN.findall(text))
    if not text.isascii():
        n += len(_ASTRAL.findall(text))
    return n


_count_cached = lru_cache(maxsize=4096)(_count)


def count_prompt_tokens(texts: list[str], n_messages: int) -> int:
    """Prompt tokens of `n_messages` messages (system prompt included) whose text parts are `texts`."""
    return REPLY_PRIMING + MESSAGE_OVERHEAD * n_messages + sum(count_tokens(t) for t in texts)


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    tokens: int
    truncated: bool
    """True when the reply stopped at the cap: finish reason "length" / "max_tokens" / "MAX_TOKENS"."""


def reply_for(model: str, prompt_key: str, cap: int) -> Reply:
    """The reply `model` gives to the prompt `prompt_key`, at most `cap` tokens long.

    The same (model, prompt) always gives the same text; a larger cap only lengthens it, never changes
    its beginning.
    """
    digest = hashlib.blake2b(f"{model}\x00{prompt_key}".encode(), digest_size=16).digest()
    u_len = int.from_bytes(digest[:6]) / 2**48
    u_start = int.from_bytes(digest[6:14])
    u_trunc = digest[14] / 256
    natural = max(1, round(_fraction(u_len) * cap)) if u_trunc >= _TRUNCATED_SHARE else cap
    tokens = min(natural, max(cap, 1))
    return Reply(_POOL.text(u_start, tokens), tokens, truncated=tokens >= cap)


def _fraction(u: float) -> float:
    """Inverse CDF of the triangular distribution (_LOW, _PEAK, _HIGH) at `u` in [0, 1)."""
    width = _HIGH - _LOW
    split = (_PEAK - _LOW) / width
    if u < split:
        return _LOW + sqrt(u * width * (_PEAK - _LOW))
    return _HIGH - sqrt((1 - u) * width * (_HIGH - _PEAK))


# Short words only: each costs exactly one token, which is what lets replies hit a token count exactly.
_WORD_LIST = """
the a to of and in is it we can use this that with each more one new time as for be on are by or
not from some what when make like into over such also then them than well just most way work test
case step plan fast slow safe cost list item text rate load run job path node task good best high
low long key set map code file line end part form show give take keep find need know see may must
will much very here data call each next last both full half core unit size type mode flow page view
note goal risk fix read send wait hold move pick sort open shut free busy
"""
_WORDS = _WORD_LIST.split()


class _Pool:
    """A fixed pseudo-random text of one-token pieces, and where each piece starts in it."""

    def __init__(self, pieces: int = 8192, seed: int = 0x5EED) -> None:
        rng = random.Random(seed)
        parts: list[str] = []
        self.sentence_starts: list[int] = []
        while len(parts) < pieces:
            self.sentence_starts.append(len(parts))
            length = rng.randint(5, 16)
            for i in range(length):
                word = rng.choice(_WORDS)
                parts.append(" " + (word.capitalize() if i == 0 else word))
                if 0 < i < length - 1 and rng.random() < 0.08:
                    parts.append(",")
            parts.append(".")
        self.offsets = [0]
        for part in parts:
            self.offsets.append(self.offsets[-1] + len(part))
        self.size = len(parts)
        self.body = "".join(parts)

    def text(self, u: int, tokens: int) -> str:
        """`tokens` pieces from the sentence start chosen by `u`, wrapping around the pool if needed."""
        start = self.sentence_starts[u % len(self.sentence_starts)]
        chunks: list[str] = []
        while tokens > 0:
            take = min(tokens, self.size - start)
            chunks.append(self.body[self.offsets[start] : self.offsets[start + take]])
            tokens -= take
            start = 0
        # Every piece opens with a space or is punctuation, so runs never merge across pieces; the leading
        # space is free, so stripping it keeps the count exact.
        return "".join(chunks).lstrip(" ")


_POOL = _Pool()
