"""Tool-call fragments as OpenAI streams them (workers/providers/tool_calls.py): read
from a chunk, merged for the stream, assembled into `message.tool_calls`."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from workers.providers.tool_calls import ToolCallDelta, assemble, merge_fragment


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Overrides tests/conftest.py's: nothing here touches PostgreSQL or Redis, and
    truncating every table before each test would be most of this module's run time."""


def opening(index: int, call_id: str, name: str, arguments: str = "") -> dict[str, Any]:
    """A call's first fragment, as the worker keeps it."""
    return {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def piece(index: int, arguments: str) -> dict[str, Any]:
    """A later fragment: only the index and a piece of the arguments."""
    return {"index": index, "function": {"arguments": arguments}}


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# Two calls as OpenAI interleaves them when `parallel_tool_calls` is on.
INTERLEAVED = [
    opening(0, "call_weather", "get_weather"),
    piece(0, '{"ci'),
    opening(1, "call_time", "get_time"),
    piece(1, '{"tz": '),
    piece(0, 'ty": "Par'),
    piece(1, '"Europe/Paris"}'),
    piece(0, 'is"}'),
]
EXPECTED = [
    call("call_weather", "get_weather", '{"city": "Paris"}'),
    call("call_time", "get_time", '{"tz": "Europe/Paris"}'),
]


# --- ToolCallDelta.from_openai -----------------------------------------------


def test_a_first_chunk_keeps_id_type_and_name() -> None:
    raw = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert ToolCallDelta.from_openai(raw).fragment == opening(0, "call_1", "get_weather")


def test_a_later_chunk_has_only_its_index_and_arguments() -> None:
    raw = {"index": 2, "function": {"arguments": '{"a'}}
    assert ToolCallDelta.from_openai(raw).fragment == piece(2, '{"a')


def test_keys_sent_as_null_or_empty_are_left_out() -> None:
    # Some compatible servers repeat every key, null or empty, in each chunk.
    raw = {"index": 1, "id": None, "type": "", "function": {"name": None, "arguments": "x"}}
    assert ToolCallDelta.from_openai(raw).fragment == piece(1, "x")


def test_a_missing_index_or_function_is_read_as_index_zero_and_no_function() -> None:
    assert ToolCallDelta.from_openai({"id": "call_9"}).fragment == {
        "index": 0,
        "id": "call_9",
        "function": {},
    }
    assert ToolCallDelta.from_openai({"index": None, "function": None}).fragment == {
        "index": 0,
        "function": {},
    }


def test_an_index_sent_as_text_is_read_as_a_number() -> None:
    assert ToolCallDelta.from_openai({"index": "3", "function": {}}).fragment["index"] == 3


# --- assemble ----------------------------------------------------------------


def test_no_fragments_no_calls() -> None:
    assert assemble([]) == []


def test_arguments_are_concatenated_across_fragments() -> None:
    fragments = [
        opening(0, "call_1", "get_weather"),
        piece(0, '{"city"'),
        piece(0, ": "),
        piece(0, '"Paris"}'),
    ]
    assert assemble(fragments) == [call("call_1", "get_weather", '{"city": "Paris"}')]


def test_interleaved_calls_are_assembled_by_index() -> None:
    calls = assemble(INTERLEAVED)
    assert calls == EXPECTED
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris"},
        {"tz": "Europe/Paris"},
    ]


def test_calls_come_out_in_index_order_whatever_order_they_started_in() -> None:
    fragments = [
        opening(2, "call_c", "c", "{}"),
        opening(0, "call_a", "a", "{}"),
        opening(1, "call_b", "b", "{}"),
    ]
    assert [c["id"] for c in assemble(fragments)] == ["call_a", "call_b", "call_c"]


def test_a_name_split_across_fragments_is_joined() -> None:
    fragments = [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_"}},
        {"index": 0, "function": {"name": "weather", "arguments": "{}"}},
    ]
    assert assemble(fragments) == [call("call_1", "get_weather", "{}")]


def test_the_id_of_the_first_fragment_survives_the_later_ones() -> None:
    fragments = [opening(0, "call_1", "f"), piece(0, "{"), piece(0, "}")]
    assert assemble(fragments)[0]["id"] == "call_1"


def test_a_call_with_no_arguments_yet_is_still_a_whole_call() -> None:
    assert assemble([{"index": 0, "id": "call_1", "function": {"name": "ping"}}]) == [
        call("call_1", "ping", "")
    ]


def test_assembling_leaves_the_fragments_as_they_were() -> None:
    fragments = copy.deepcopy(INTERLEAVED)
    assemble(fragments)
    assert fragments == INTERLEAVED


# --- merge_fragment ----------------------------------------------------------


def merged(fragments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pending: list[dict[str, Any]] = []
    for fragment in fragments:
        merge_fragment(pending, fragment)
    return pending


def test_pieces_of_one_call_fold_into_its_opening_fragment() -> None:
    fragments = [opening(0, "call_1", "get_weather"), piece(0, '{"city"'), piece(0, ': "Rome"}')]
    assert merged(fragments) == [opening(0, "call_1", "get_weather", '{"city": "Rome"}')]


def test_pieces_without_their_opening_fragment_fold_together() -> None:
    # After a flush the pending list starts again with a bare piece.
    assert merged([piece(0, '"Ro'), piece(0, 'me"}')]) == [piece(0, '"Rome"}')]


def test_interleaved_calls_fold_only_neighbouring_pieces() -> None:
    # Stream order is kept: a piece of call 0 after one of call 1 starts a new fragment.
    assert merged(INTERLEAVED) == [
        opening(0, "call_weather", "get_weather", '{"ci'),
        opening(1, "call_time", "get_time", '{"tz": '),
        piece(0, 'ty": "Par'),
        piece(1, '"Europe/Paris"}'),
        piece(0, 'is"}'),
    ]


def test_a_new_call_on_the_same_index_is_not_folded() -> None:
    # A fragment carrying an id or a name opens a call, even on the previous index.
    with_id = opening(0, "call_2", "second")
    assert merged([opening(0, "call_1", "first", "{}"), with_id]) == [
        opening(0, "call_1", "first", "{}"),
        with_id,
    ]
    named = {"index": 0, "function": {"name": "more"}}
    assert merged([piece(0, "{}"), named]) == [piece(0, "{}"), named]
    only_id = {"index": 0, "id": "call_3", "function": {"arguments": "{}"}}
    assert merged([piece(0, "{}"), only_id]) == [piece(0, "{}"), only_id]


def test_a_piece_folds_into_a_fragment_that_had_no_arguments() -> None:
    first = {"index": 0, "id": "call_1", "function": {"name": "f"}}
    assert merged([first, piece(0, "{}")]) == [
        {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{}"}}
    ]


def test_merging_never_changes_the_fragments_it_was_given() -> None:
    # The worker keeps the raw fragments for the final answer (assemble) and merges
    # the same objects for the stream: a merge writing into them would double the
    # arguments of the stored call.
    fragments = copy.deepcopy(INTERLEAVED) + [piece(0, "")]
    snapshot = copy.deepcopy(fragments)
    merged(fragments)
    assert fragments == snapshot
    assert assemble(fragments) == EXPECTED


def test_a_client_accumulating_merged_fragments_by_index_gets_the_same_calls() -> None:
    # The relay sends merged fragments, in several batches (the worker flushes between
    # them); accumulated by index they must be the calls the final answer stores.
    batches = [INTERLEAVED[:2], INTERLEAVED[2:5], INTERLEAVED[5:]]
    relayed = [fragment for batch in batches for fragment in merged(batch)]
    assert assemble(relayed) == assemble(INTERLEAVED) == EXPECTED
