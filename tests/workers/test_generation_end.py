"""The pure parts of storing a generation's end (workers/generation/persistence.py):
the usage counted when the provider gave none, and which database errors mean the
data was refused."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, StatementError

from core.chat import estimate_tokens
from workers.generation.outcome import Outcome
from workers.generation.persistence import Unstorable, final_usage, refusals_as_unstorable
from workers.providers.base import ProviderCall, Usage


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Overrides tests/conftest.py's: nothing here touches PostgreSQL or Redis."""


def call_with(*messages: dict) -> ProviderCall:
    return ProviderCall(base_url="", api_key="", model="m", messages=list(messages))


def test_the_providers_counts_are_kept_as_given() -> None:
    outcome = Outcome("Hello there", Usage(12, 3), None)
    assert final_usage(call_with({"role": "user", "content": "hi"}), outcome) == (12, 3, False)


def test_missing_counts_are_estimated_and_flagged() -> None:
    call = call_with(
        {"role": "system", "content": "Be brief."},
        # An assistant turn of tool calls has no content.
        {"role": "assistant", "content": None},
        {"role": "user", "content": "What time is it?"},
    )
    calls = [{"id": "c", "type": "function", "function": {"name": "now", "arguments": "{}"}}]
    outcome = Outcome("Let me see.", Usage(), None, calls)
    prompt = (
        estimate_tokens("Be brief.") + estimate_tokens("") + estimate_tokens("What time is it?")
    )
    assert final_usage(call, outcome) == (prompt, estimate_tokens("Let me see.{}"), True)


def test_no_reply_counts_no_completion_tokens() -> None:
    assert final_usage(None, Outcome.empty()) == (0, 0, True)
    assert not Outcome.empty().produced


def test_a_refused_value_is_unstorable_and_named_by_its_error_class_only() -> None:
    refused = DataError(
        "INSERT ...", {"content": "secret"}, psycopg.errors.NumericValueOutOfRange()
    )
    with pytest.raises(Unstorable) as caught, refusals_as_unstorable():
        raise refused
    assert str(caught.value) == "NumericValueOutOfRange"
    with pytest.raises(Unstorable), refusals_as_unstorable():
        raise IntegrityError("INSERT ...", {}, psycopg.errors.ForeignKeyViolation())
    with pytest.raises(Unstorable, match="UnicodeEncodeError"), refusals_as_unstorable():
        "\ud800".encode()


def test_a_parameter_sqlalchemy_cannot_prepare_is_unstorable() -> None:
    with pytest.raises(Unstorable, match="ValueError"), refusals_as_unstorable():
        raise StatementError("bad parameter", "INSERT ...", {}, ValueError())


def test_a_lost_connection_passes_as_is() -> None:
    lost = OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed"))
    with pytest.raises(OperationalError), refusals_as_unstorable():
        raise lost


def test_reasoning_counts_towards_an_estimated_completion() -> None:
    outcome = Outcome("Four.", Usage(), None, reasoning="Two and two.")
    assert final_usage(None, outcome)[1] == estimate_tokens("Two and two.Four.")


def test_reasoning_alone_is_a_produced_reply() -> None:
    assert Outcome("", Usage(), None, reasoning="Hmm.").produced
