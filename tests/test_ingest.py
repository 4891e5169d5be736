"""Reading job files: both line formats, every kind of bad line reported with its line number, and a
parser that never crashes on arbitrary bytes (property test)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from producer.ingest import Line, LineError, parse_line, read_lines
from shared.models import Priority

REPO = Path(__file__).resolve().parent.parent


def _lines(*raw: bytes) -> list[Line | LineError]:
    return list(read_lines(raw))


def test_plain_prompt_line() -> None:
    [item] = _lines(b'{"custom_id": "a", "class": "simple", "prompt": "Hi", "priority": "high"}\n')
    assert isinstance(item, Line) and item.line_no == 1
    assert item.spec.prompt == "Hi" and item.spec.class_ == "simple" and item.spec.priority is Priority.HIGH


def test_openai_batch_line_maps_body_fields() -> None:
    line = {
        "custom_id": "req-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "max_completion_tokens": 50,
            "temperature": 0.2,
            "store": False,
            "provider": {"sort": "price", "ignore": ["azure"]},
        },
    }
    [item] = _lines(json.dumps(line).encode())
    assert isinstance(item, Line)
    spec = item.spec
    assert spec.custom_id == "req-1" and spec.model == "gpt-4o-mini" and spec.max_tokens == 50
    assert spec.temperature == 0.2 and spec.provider is not None and spec.provider.sort == "price"
    assert [m.role for m in spec.chat_messages()] == ["system", "user"]


def test_bad_lines_are_reported_with_their_numbers_and_the_rest_proceed() -> None:
    items = _lines(
        b'{"prompt": "ok 1"}\n',
        b'{"prompt": "broken\n',  # invalid JSON
        b'{"class": "simple"}\n',  # no prompt
        b"\xff\xfe not utf-8\n",  # invalid UTF-8
        b"\n",  # blank: skipped, but still counted for numbering
        b"[1, 2]\n",  # not an object
        b'{"prompt": "ok 2", "clas": "simple"}\n',  # typo: unknown field
        b'{"custom_id": "x", "method": "GET", "url": "/v1/chat/completions", "body": {}}\n',
        b'{"custom_id": "y", "url": "/v1/embeddings", "body": {"input": "x"}}\n',
        b'{"custom_id": "z", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [], "stream": true}}\n',
        b'{"prompt": "ok 3"}\n',
    )
    ok = [i.line_no for i in items if isinstance(i, Line)]
    errors = {i.line_no: i.code for i in items if isinstance(i, LineError)}
    assert ok == [1, 11]
    assert errors == {
        2: "invalid_json",
        3: "invalid_request",
        4: "invalid_utf8",
        6: "invalid_line",
        7: "invalid_request",
        8: "invalid_line",
        9: "invalid_line",
        10: "invalid_request",
    }
    [typo] = [i for i in items if isinstance(i, LineError) and i.line_no == 7]
    assert "clas" in typo.message


def test_example_files_parse() -> None:
    for name in ("prompts.jsonl", "openai_batch.jsonl"):
        with (REPO / "examples" / name).open("rb") as f:
            items = list(read_lines(f))
        assert items and all(isinstance(i, Line) for i in items), name
    with (REPO / "examples" / "prompts.jsonl").open("rb") as f:
        assert sum(1 for _ in f) >= 200


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parser_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    result = parse_line(raw, 1)
    assert result is None or isinstance(result, LineError) or result.prompt is not None or result.messages


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "prompt",
                "messages",
                "class",
                "priority",
                "max_tokens",
                "custom_id",
                "body",
                "url",
                "method",
                "models",
                "provider",
                "metadata",
                "x",
            ]
        ),
        json_values,
        max_size=6,
    )
)
def test_parser_turns_any_json_object_into_a_spec_or_a_clear_error(obj: dict[str, object]) -> None:
    result = parse_line(json.dumps(obj).encode(), 7)
    if isinstance(result, LineError):
        assert result.line_no == 7 and result.message
    else:
        assert result is not None and (result.prompt is not None) != (result.messages is not None)
