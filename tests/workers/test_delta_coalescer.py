"""How the worker holds a reply's reasoning, deltas and tool-call fragments between two
writes to `gen:{id}` (workers/generation/stream_writer.py): one piece per run of a
kind, in the provider's order."""

from __future__ import annotations

import pytest

from workers.generation.stream_writer import DeltaCoalescer


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Overrides tests/conftest.py's: nothing here touches PostgreSQL or Redis."""


def fragment(index: int, arguments: str, **first: str) -> dict:
    function = {"arguments": arguments, **({"name": first["name"]} if "name" in first else {})}
    return {"index": index, **({"id": first["id"]} if "id" in first else {}), "function": function}


def test_a_run_of_text_is_held_as_one_piece() -> None:
    deltas = DeltaCoalescer(chars=100)
    assert not deltas.held
    deltas.add_text("Hel")
    deltas.add_text("lo")
    assert deltas.held
    assert deltas.take() == [("delta", {"content": "Hello"})]
    assert not deltas.held
    assert deltas.take() == []


def test_text_is_full_once_enough_characters_are_held() -> None:
    deltas = DeltaCoalescer(chars=6)
    deltas.add_text("abc")
    assert not deltas.full()
    deltas.add_reasoning("def")
    assert deltas.full()
    deltas.take()
    # The count starts again after a take.
    deltas.add_text("g")
    assert not deltas.full()


def test_text_then_a_tool_call_are_two_pieces_in_order() -> None:
    deltas = DeltaCoalescer(chars=100)
    deltas.add_text("Let me look")
    deltas.add_text(" that up.")
    deltas.add_tool_call(fragment(0, "", id="call_1", name="search"))
    assert deltas.take() == [
        ("delta", {"content": "Let me look that up."}),
        (
            "delta",
            {
                "content": "",
                "tool_calls": [
                    {"index": 0, "id": "call_1", "function": {"arguments": "", "name": "search"}}
                ],
            },
        ),
    ]


def test_argument_pieces_of_one_call_are_merged_while_held() -> None:
    deltas = DeltaCoalescer(chars=100)
    deltas.add_tool_call(fragment(0, '{"q"', id="call_1", name="search"))
    deltas.add_tool_call(fragment(0, ': "x"}'))
    ((_, data),) = deltas.take()
    assert data["tool_calls"] == [
        {"index": 0, "id": "call_1", "function": {"arguments": '{"q": "x"}', "name": "search"}}
    ]


def test_taken_fragments_are_not_changed_by_later_ones() -> None:
    deltas = DeltaCoalescer(chars=100)
    deltas.add_tool_call(fragment(0, "{", id="call_1", name="f"))
    ((_, data),) = deltas.take()
    deltas.add_tool_call(fragment(0, "}"))
    assert data["tool_calls"][0]["function"]["arguments"] == "{"
    ((_, later),) = deltas.take()
    assert later["tool_calls"] == [{"index": 0, "function": {"arguments": "}"}}]


def test_reasoning_then_reply_text_are_two_events_in_order() -> None:
    deltas = DeltaCoalescer(chars=100)
    deltas.add_reasoning("Two and two")
    deltas.add_reasoning(" make four.")
    deltas.add_text("Four")
    deltas.add_text(".")
    assert deltas.take() == [
        ("reasoning", {"content": "Two and two make four."}),
        ("delta", {"content": "Four."}),
    ]


def test_every_change_of_kind_keeps_the_providers_order() -> None:
    deltas = DeltaCoalescer(chars=100)
    deltas.add_text("Let me check.")
    deltas.add_reasoning("Which tool?")
    deltas.add_tool_call(fragment(0, "{}", id="call_1", name="now"))
    deltas.add_reasoning("Done.")
    pieces = deltas.take()
    assert [
        (event, data["content"], len(data.get("tool_calls", ()))) for event, data in pieces
    ] == [
        ("delta", "Let me check.", 0),
        ("reasoning", "Which tool?", 0),
        ("delta", "", 1),
        ("reasoning", "Done.", 0),
    ]
