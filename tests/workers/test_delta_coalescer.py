"""How the worker coalesces a reply's reasoning and deltas before writing them to `gen:{id}`
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
    assert deltas.take() == (("delta", {"content": "Hello"}),)
    assert not deltas.due()


def test_text_is_due_once_enough_characters_are_held() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=6)
    deltas.take()
    deltas.add_text("abc")
    assert not deltas.due()
    deltas.add_text("def")
    assert deltas.due()
    assert deltas.take() == (("delta", {"content": "abcdef"}),)
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
    assert ready == (("delta", {"content": "Let me look that up."}),)
    assert deltas.take() == (
        (
            "delta",
            {
                "content": "",
                "tool_calls": [
                    {"index": 0, "id": "call_1", "function": {"arguments": "", "name": "search"}}
                ],
            },
        ),
    )


def test_argument_pieces_of_one_call_are_merged_while_held() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=100)
    assert deltas.add_tool_call(fragment(0, '{"q"', id="call_1", name="search")) == ()
    assert deltas.add_tool_call(fragment(0, ': "x"}')) == ()
    ((_, data),) = deltas.take()
    assert data["tool_calls"] == [
        {"index": 0, "id": "call_1", "function": {"arguments": '{"q": "x"}', "name": "search"}}
    ]


def test_text_after_tool_call_fragments_hands_them_back_first() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=100)
    deltas.add_tool_call(fragment(0, "{}", id="call_1", name="now"))
    ready = deltas.add_text("Done.")
    assert [(event, set(data)) for event, data in ready] == [("delta", {"content", "tool_calls"})]
    assert ready[0][1]["content"] == ""
    assert deltas.take() == (("delta", {"content": "Done."}),)


def test_taken_fragments_are_not_changed_by_later_ones() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=100)
    deltas.add_tool_call(fragment(0, "{", id="call_1", name="f"))
    ((_, data),) = deltas.take()
    deltas.add_tool_call(fragment(0, "}"))
    assert data["tool_calls"][0]["function"]["arguments"] == "{"
    ((_, later),) = deltas.take()
    assert later["tool_calls"] == [{"index": 0, "function": {"arguments": "}"}}]


def test_reasoning_is_held_as_its_own_event() -> None:
    clock = Clock()
    deltas = DeltaCoalescer(clock, seconds=0.05, chars=100)
    assert deltas.add_reasoning("Let me ") == ()
    assert deltas.add_reasoning("think.") == ()
    assert not deltas.due()
    clock.now += 0.06
    assert deltas.due()
    assert deltas.take() == (("reasoning", {"content": "Let me think."}),)


def test_reply_text_after_reasoning_hands_the_reasoning_back_first() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=100)
    deltas.add_reasoning("Two and two")
    deltas.add_reasoning(" make four.")
    assert deltas.add_text("Four") == (("reasoning", {"content": "Two and two make four."}),)
    assert deltas.add_text(".") == ()
    assert deltas.take() == (("delta", {"content": "Four."}),)


def test_reasoning_after_text_or_tool_calls_keeps_the_providers_order() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=100)
    deltas.add_text("Let me check.")
    assert deltas.add_reasoning("Which tool?") == (("delta", {"content": "Let me check."}),)
    ready = deltas.add_tool_call(fragment(0, "{}", id="call_1", name="now"))
    assert ready == (("reasoning", {"content": "Which tool?"}),)
    (event, data) = deltas.add_reasoning("Done.")[0]
    assert (event, data["content"], len(data["tool_calls"])) == ("delta", "", 1)
    assert deltas.take() == (("reasoning", {"content": "Done."}),)


def test_reasoning_counts_towards_the_held_characters() -> None:
    deltas = DeltaCoalescer(Clock(), seconds=0.05, chars=6)
    deltas.take()
    deltas.add_reasoning("abc")
    assert not deltas.due()
    deltas.add_reasoning("def")
    assert deltas.due()
