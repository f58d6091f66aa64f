"""How the API frames server-sent events, without a running API: our own events
(`StreamEvent.sse`, api/streaming/relay.py and sse.py) and OpenAI's
`chat.completion.chunk` stream (api/streaming/openai_chunks.py). Each frame is read
back with the worker's SSE reader (workers/providers/sse.py), which
follows the spec's line rules.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from api.streaming.hub import Subscription
from api.streaming.openai_chunks import completion_chunks as _chunks
from api.streaming.relay import PING, StreamEvent
from api.streaming.start import StartedGeneration
from core.streams import CANCELLED, DELTA, DONE, ERROR, REASONING, START, decode, encode, stream_key
from workers.providers.sse import SseDecoder


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Overrides tests/conftest.py's: nothing here touches PostgreSQL or Redis, and
    truncating every table before each test would be most of this module's run time."""


# Text that breaks naive framing: line breaks of every kind, quotes, a backslash,
# characters outside ASCII and the BMP, and Unicode line separators.
TRICKY = 'line 1\nline 2\r\n\r"quoted" \\ back\u2028sep\u2029para \x85 caf\u00e9 \U0001f600 \u6c49'


def read_sse(body: str | bytes) -> list[tuple[str | None, bytes]]:
    """(event, data) pairs as a spec-following client reads them."""
    raw = body.encode() if isinstance(body, str) else body
    decoder = SseDecoder()
    return decoder.feed(raw) + decoder.end()


def stored(entry_id: str, event: str, data: dict[str, Any]) -> StreamEvent:
    """An event as the relay yields it from a stream entry the worker wrote."""
    fields = encode(event, data)
    name, decoded = decode(fields)
    return StreamEvent(entry_id, name, decoded, fields["data"])


# --- StreamEvent.sse ---------------------------------------------------------


def test_a_ping_is_a_comment() -> None:
    assert PING.sse() == ": ping\n\n"
    assert StreamEvent(None, "ping", {}).sse() == ": ping\n\n"
    # A comment is no event: a client sees nothing.
    assert read_sse(PING.sse()) == []


def test_an_event_has_id_event_and_data_lines_then_a_blank_line() -> None:
    event = StreamEvent("1796166310463-0", "delta", {"content": "Hi"}, '{"content":"Hi"}')
    assert event.sse() == 'id: 1796166310463-0\nevent: delta\ndata: {"content":"Hi"}\n\n'


def test_the_stream_json_is_relayed_as_it_was_written() -> None:
    # Not encoded again: what the worker wrote (here with a space) goes out byte for byte.
    event = StreamEvent("2-0", "delta", {"content": "x"}, '{"content": "x"}')
    assert event.sse() == 'id: 2-0\nevent: delta\ndata: {"content": "x"}\n\n'


def test_data_without_its_stream_json_is_encoded_compactly() -> None:
    event = StreamEvent("3-1", "done", {"finish_reason": "stop", "usage": None})
    assert event.sse() == 'id: 3-1\nevent: done\ndata: {"finish_reason":"stop","usage":null}\n\n'


def test_an_event_the_relay_made_itself_has_no_id() -> None:
    # No stream entry, so nothing for Last-Event-ID to resume from.
    event = StreamEvent(None, "error", {"code": "stream_expired"})
    assert event.sse() == 'event: error\ndata: {"code":"stream_expired"}\n\n'


def test_an_event_named_ping_with_an_id_is_a_real_event() -> None:
    assert StreamEvent("5-0", "ping", {}).sse() == "id: 5-0\nevent: ping\ndata: {}\n\n"


def test_multi_line_content_stays_on_one_data_line() -> None:
    frame = stored("7-0", DELTA, {"content": TRICKY}).sse()
    # Exactly id, event, data and the blank line: no line break of the text leaked out.
    assert frame.count("\n") == 4
    assert "\r" not in frame
    assert frame.endswith("\n\n")
    assert frame.split("\n")[:2] == ["id: 7-0", "event: delta"]
    [(name, data)] = read_sse(frame)
    assert name == "delta"
    assert orjson.loads(data) == {"content": TRICKY}


def test_text_outside_ascii_is_sent_as_utf8_not_escaped() -> None:
    frame = stored("8-0", DELTA, {"content": "caf\u00e9 \U0001f600"}).sse()
    assert 'data: {"content":"caf\u00e9 \U0001f600"}' in frame


def test_a_sequence_of_events_reads_back_in_order() -> None:
    events = [
        stored("1-0", START, {"generation_id": "g"}),
        PING,
        stored("2-0", DELTA, {"content": "a\n\nb"}),
        stored("3-0", DELTA, {"content": ""}),
        PING,
        stored("4-0", DONE, {"finish_reason": "stop"}),
    ]
    body = "".join(event.sse() for event in events)
    assert [(name, orjson.loads(data)) for name, data in read_sse(body)] == [
        ("start", {"generation_id": "g"}),
        ("delta", {"content": "a\n\nb"}),
        ("delta", {"content": ""}),
        ("done", {"finish_reason": "stop"}),
    ]


# --- the OpenAI chunk stream (api/streaming/openai_chunks.py) ----------------


async def completion_frames(
    entries: list[tuple[str, dict[str, Any]]], model: str = "deepseek-chat", usage: bool = False
) -> tuple[uuid.UUID, list[bytes]]:
    """The frames `_chunks` sends for a generation whose stream holds `entries`.

    The entries reach the relay through its subscription queue, as the stream hub
    would deliver them; the relay and the chunk encoder are the real ones."""
    generation_id = uuid.uuid4()
    subscription = Subscription(stream_key(str(generation_id)), "0-0")
    subscription.queue.put_nowait(
        [(f"{n + 1}-0", encode(event, data)) for n, (event, data) in enumerate(entries)]
    )
    started = StartedGeneration(generation_id, None, None, subscription=subscription)
    return generation_id, [frame async for frame in _chunks(started, model, usage)]


def chunk_of(frame: bytes) -> dict[str, Any]:
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n"), frame
    [(name, data)] = read_sse(frame)
    assert name is None
    return orjson.loads(data)


async def test_a_text_stream_as_openai_chunks() -> None:
    generation_id, frames = await completion_frames(
        [
            (START, {"generation_id": "g"}),
            (DELTA, {"content": "Hel"}),
            (DELTA, {"content": TRICKY}),
            (DONE, {"finish_reason": "stop"}),
        ]
    )
    assert frames[-1] == b"data: [DONE]\n\n"
    chunks = [chunk_of(frame) for frame in frames[:-1]]
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": TRICKY},
        {},
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None, None, None, "stop"]
    for chunk in chunks:
        assert chunk["id"] == f"chatcmpl-{generation_id.hex}"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "deepseek-chat"
        assert chunk["choices"][0]["index"] == 0
        assert isinstance(chunk["created"], int)


async def test_an_empty_text_delta_sends_no_chunk() -> None:
    _, frames = await completion_frames(
        [(START, {}), (DELTA, {"content": ""}), (DONE, {"finish_reason": "length"})]
    )
    deltas = [chunk_of(frame)["choices"][0] for frame in frames[:-1]]
    assert deltas == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "length"},
    ]


async def test_tool_calls_are_relayed_in_openai_shape() -> None:
    fragments = [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"a": 1}'}},
    ]
    _, frames = await completion_frames(
        [
            (START, {}),
            (DELTA, {"content": "", "tool_calls": fragments}),
            (DONE, {"finish_reason": "tool_calls"}),
        ]
    )
    chunks = [chunk_of(frame) for frame in frames[:-1]]
    assert chunks[1]["choices"][0]["delta"] == {"tool_calls": fragments}
    assert chunks[2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_usage_is_a_last_chunk_without_choices_when_asked_for() -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "estimated": False}
    _, frames = await completion_frames(
        [(START, {}), (DONE, {"finish_reason": "stop", "usage": usage})], usage=True
    )
    last = chunk_of(frames[-2])
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    _, without = await completion_frames(
        [(START, {}), (DONE, {"finish_reason": "stop", "usage": usage})]
    )
    assert all("usage" not in chunk_of(frame) for frame in without[:-1])


async def test_a_cancelled_generation_ends_with_stop() -> None:
    _, frames = await completion_frames([(START, {}), (CANCELLED, {})])
    assert chunk_of(frames[-2])["choices"][0]["finish_reason"] == "stop"
    assert frames[-1] == b"data: [DONE]\n\n"


async def test_an_error_is_sent_in_openai_error_shape_then_done() -> None:
    _, frames = await completion_frames(
        [(START, {}), (ERROR, {"code": "worker_lost", "message": "The worker stopped."})]
    )
    assert chunk_of(frames[-2]) == {
        "error": {"message": "The worker stopped.", "type": "api_error", "code": "worker_lost"}
    }
    assert frames[-1] == b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    "model",
    [
        "llama-3.1-70b",
        "org/model:tag",
        'say "hi" model',
        pytest.param(
            'my-model"',
            id="model-ending-in-a-quote",
        ),
        pytest.param(
            "",
            id="empty-model",
        ),
    ],
)
async def test_text_chunks_carry_the_text_whatever_the_model_name(model: str) -> None:
    # A custom model config or plug-in-api's `model` is the caller's own string.
    _, frames = await completion_frames(
        [(START, {}), (DELTA, {"content": "Hello"}), (DONE, {})], model=model
    )
    text = chunk_of(frames[1])
    assert text["model"] == model
    assert text["choices"][0]["delta"] == {"content": "Hello"}


async def test_reasoning_streams_as_reasoning_content_before_content() -> None:
    usage = {
        "prompt_tokens": 40,
        "completion_tokens": 9,
        "total_tokens": 49,
        "reasoning_tokens": 6,
        "cached_tokens": 30,
        "estimated": False,
    }
    blocks = [{"type": "thinking", "thinking": "Hmm.", "signature": "c2ln"}]
    _, frames = await completion_frames(
        [
            (START, {}),
            (REASONING, {"content": "Hmm"}),
            (REASONING, {"content": TRICKY}),
            (DELTA, {"content": "Yes."}),
            (DONE, {"finish_reason": "stop", "usage": usage, "thinking_blocks": blocks}),
        ],
        usage=True,
    )
    chunks = [chunk_of(frame) for frame in frames[:-1]]
    assert [chunk["choices"][0]["delta"] for chunk in chunks[:-1]] == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Hmm"},
        {"reasoning_content": TRICKY},
        {"content": "Yes."},
        {"thinking_blocks": blocks},
        {},
    ]
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 40,
        "completion_tokens": 9,
        "total_tokens": 49,
        "prompt_tokens_details": {"cached_tokens": 30},
        "completion_tokens_details": {"reasoning_tokens": 6},
    }
