"""Job specs: the validation a producer relies on, and the token estimate routing relies on."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.models import JobSpec, Priority, estimate_input_tokens
from shared.money import from_nanos, quantize, to_nanos


def test_exactly_one_input() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        JobSpec.model_validate({"prompt": "a", "messages": [{"role": "user", "content": "b"}]})
    with pytest.raises(ValidationError, match="exactly one"):
        JobSpec.model_validate({"class": "simple"})
    with pytest.raises(ValidationError, match="no user message"):
        JobSpec.model_validate({"messages": [{"role": "system", "content": "x"}]})
    with pytest.raises(ValidationError, match="empty"):
        JobSpec.model_validate({"prompt": "   "})


def test_priority_by_name_or_number() -> None:
    assert JobSpec.model_validate({"prompt": "a", "priority": "LOW"}).priority is Priority.LOW
    assert JobSpec.model_validate({"prompt": "a", "priority": 0}).priority is Priority.HIGH
    with pytest.raises(ValidationError, match="priority"):
        JobSpec.model_validate({"prompt": "a", "priority": "urgent"})


def test_metadata_limits_follow_openai() -> None:
    with pytest.raises(ValidationError, match="16 keys"):
        JobSpec.model_validate({"prompt": "a", "metadata": {str(i): "v" for i in range(17)}})


def test_round_trip_through_json() -> None:
    spec = JobSpec.model_validate(
        {"prompt": "a", "class": "simple", "max_cost": "0.01", "provider": {"only": ["openai"]}, "seed": 3}
    )
    again = JobSpec.model_validate_json(spec.to_json())
    assert again == spec and again.max_cost == Decimal("0.01")


def test_estimate_errs_high_for_non_latin_text() -> None:
    latin = JobSpec(prompt="a" * 400)
    cjk = JobSpec(prompt="漢" * 400)
    assert estimate_input_tokens(cjk) > 3 * estimate_input_tokens(latin)


@given(st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False, allow_infinity=False))
def test_money_round_trip_is_exact_to_a_nano_dollar(amount: Decimal) -> None:
    assert from_nanos(to_nanos(amount)) == quantize(amount)
    assert abs(quantize(amount) - amount) <= Decimal("0.0000000005")
