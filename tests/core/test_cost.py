"""What a generation costs (core/chat.py `cost_of`): cache reads and writes at the model's
cache prices, the input price where it names none; pure rules, no servers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.chat import cost_of
from core.plans import model_spec

MILLION = Decimal(1_000_000)


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Overrides tests/conftest.py's: nothing here touches PostgreSQL or Redis."""


def test_without_cache_every_prompt_token_is_billed_at_the_input_price() -> None:
    spec = model_spec("claude-sonnet-5-5")
    assert spec is not None
    expected = (spec.input_price * 1000 + spec.output_price * 200) / MILLION
    assert cost_of("claude-sonnet-5-5", 1000, 200) == expected


def test_cache_reads_and_writes_take_their_own_prices() -> None:
    spec = model_spec("claude-sonnet-5-5")
    assert spec is not None and spec.cache_read_price and spec.cache_write_price
    cost = cost_of("claude-sonnet-5-5", 1000, 200, cached_tokens=600, cache_write_tokens=300)
    expected = (
        spec.input_price * 100
        + spec.cache_read_price * 600
        + spec.cache_write_price * 300
        + spec.output_price * 200
    ) / MILLION
    assert cost == expected


def test_a_cached_request_costs_less_than_the_same_request_uncached() -> None:
    for model in ("deepseek-flash", "kimi-k2.6", "claude-sonnet-5-5"):
        assert cost_of(model, 1000, 50, cached_tokens=900) < cost_of(model, 1000, 50)


def test_a_model_without_cache_prices_bills_them_at_the_input_price() -> None:
    spec = model_spec("deepseek-flash")
    assert spec is not None and spec.cache_write_price is None
    assert cost_of("deepseek-flash", 1000, 10, cache_write_tokens=400) == cost_of(
        "deepseek-flash", 1000, 10
    )


def test_a_report_that_does_not_add_up_is_bounded_by_the_prompt() -> None:
    spec = model_spec("claude-sonnet-5-5")
    assert spec is not None and spec.cache_read_price is not None
    # More cached tokens than prompt tokens: all of the prompt was read from cache.
    cost = cost_of("claude-sonnet-5-5", 100, 0, cached_tokens=500, cache_write_tokens=50)
    assert cost == spec.cache_read_price * 100 / MILLION
    assert cost_of("claude-sonnet-5-5", 100, 0, cached_tokens=-5) == cost_of(
        "claude-sonnet-5-5", 100, 0
    )


def test_an_unknown_model_costs_nothing() -> None:
    assert cost_of("someone-elses-model", 1000, 1000, cached_tokens=10) == Decimal(0)
