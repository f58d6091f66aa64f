"""How the worker coalesces a reply's deltas before writing them to `gen:{id}`
(workers/generation/stream_writer.py), with a clock the test moves."""

from __future__ import annotations

import pytest

from workers.generation.stream_writer import DeltaCoalescer


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Overrides tests/conftest.py's: nothing here touches PostgreSQL or Redis."""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fragment(index: int, arguments: str, **first: str) -> dict:
    function = {"arguments": arguments, **({"name": first["name"]} if "name" in first else {})}
    return {"index": index, **({"id": first["id"]} if "id" in first else {}), "function": function}


def test_text_is_held_until_enough_time_passed() -> None:
    clock = Clock()
    deltas = DeltaCoalescer(clock, seconds=0.05, chars=100)
    deltas.take()
    assert deltas.add_text("Hel") == ()
    clock.now += 0.049
    assert deltas.add_text("lo") == ()
    assert not deltas.due()
    clock.now += 0.001
    assert deltas.due()
    assert deltas.take() == ({"content": "Hello"},)
    assert not deltas.due()


def test_text_is_due_once_enough_characters_are_held() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=6)
    deltas.take()
    deltas.add_text("abc")
    assert not deltas.due()
    deltas.add_text("def")
    assert deltas.due()
    assert deltas.take() == ({"content": "abcdef"},)
    # The count starts again after a take.
    deltas.add_text("g")
    assert not deltas.due()


def test_take_restarts_the_clock_and_hands_nothing_when_nothing_is_held() -> None:
    clock = Clock()
    deltas = DeltaCoalescer(clock, seconds=0.05, chars=100)
    clock.now += 1
    assert deltas.take() == ()
    deltas.add_text("x")
    assert not deltas.due()


def test_a_tool_call_fragment_hands_back_the_held_text_first() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=100)
    deltas.add_text("Let me look")
    deltas.add_text(" that up.")
    ready = deltas.add_tool_call(fragment(0, "", id="call_1", name="search"))
    assert ready == ({"content": "Let me look that up."},)
    assert deltas.take() == (
        {
            "content": "",
            "tool_calls": [
                {"index": 0, "id": "call_1", "function": {"arguments": "", "name": "search"}}
            ],
        },
    )


def test_argument_pieces_of_one_call_are_merged_while_held() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=100)
    assert deltas.add_tool_call(fragment(0, '{"q"', id="call_1", name="search")) == ()
    assert deltas.add_tool_call(fragment(0, ': "x"}')) == ()
    (data,) = deltas.take()
    assert data["tool_calls"] == [
        {"index": 0, "id": "call_1", "function": {"arguments": '{"q": "x"}', "name": "search"}}
    ]


def test_text_after_tool_call_fragments_hands_them_back_first() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=100)
    deltas.add_tool_call(fragment(0, "{}", id="call_1", name="now"))
    ready = deltas.add_text("Done.")
    assert [set(data) for data in ready] == [{"content", "tool_calls"}]
    assert ready[0]["content"] == ""
    assert deltas.take() == ({"content": "Done."},)


def test_taken_fragments_are_not_changed_by_later_ones() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=100)
    deltas.add_tool_call(fragment(0, "{", id="call_1", name="f"))
    (data,) = deltas.take()
    deltas.add_tool_call(fragment(0, "}"))
    assert data["tool_calls"][0]["function"]["arguments"] == "{"
    (later,) = deltas.take()
    assert later["tool_calls"] == [{"index": 0, "function": {"arguments": "}"}}]
