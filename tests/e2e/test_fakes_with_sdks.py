"""The fake upstreams held to code we did not write: the official `openai` and `anthropic`
SDKs point straight at tests/fakes/llm.py (no Switchboard in between) and must parse what
the fake meant: reasoning before content, thinking blocks with their signature, tool calls,
cache and reasoning usage, the providers' 400s and the model lists. A stream in the wrong
order or a field the SDK does not find breaks its accumulation, and these tests with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import anthropic
import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.anthropic_protocol import redacted_data, thinking_signature
from tests.fakes.llm import DEFAULT_MODELS, REASONING_MISSING, FakeLLM, expected_tool_calls
from tests.fakes.openai_protocol import expected_reasoning, expected_reply
from tests.fakes.server import serve_in_thread

WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "call": {"type": "integer"}},
            },
        },
    }
    for name in ("get_weather", "get_time")
]
CLAUDE_TOOLS = [
    {"name": t["function"]["name"], "input_schema": t["function"]["parameters"]}
    for t in WEATHER_TOOLS
]
THINKING = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture
def deepseek(fake_llm: FakeLLM) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_llm.base_url, api_key="sk-fake-deepseek", max_retries=0)


@pytest.fixture
def claude(fake_llm: FakeLLM) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake_llm.base_url, api_key="sk-ant-fake", max_retries=0)


def _user(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


# OpenAI-compatible (DeepSeek V4, Kimi K2.6) ------------------------------------


def test_openai_streams_reasoning_before_content_with_usage_details(deepseek) -> None:
    prompt = "think [[tag=oa-think reasoning=4 tokens=3 cached=7 cache_hit=5]]"
    kinds, reasoning, content, usage = [], "", "", None
    for chunk in deepseek.chat.completions.create(
        model="deepseek-v4-flash",
        messages=_user(prompt),
        stream=True,
        stream_options={"include_usage": True},
    ):
        usage = chunk.usage or usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        # An unknown field: the SDK keeps it as an extra attribute of the delta.
        piece = getattr(delta, "reasoning_content", None)
        assert piece == (delta.model_extra or {}).get("reasoning_content")
        if piece:
            kinds.append("reasoning")
            reasoning += piece
        if delta.content:
            kinds.append("content")
            content += delta.content
    assert kinds == ["reasoning"] * 4 + ["content"] * 3
    assert reasoning == expected_reasoning(prompt)
    assert content == expected_reply(prompt)
    assert usage is not None
    assert usage.completion_tokens == 7 and usage.total_tokens == usage.prompt_tokens + 7
    assert usage.completion_tokens_details.reasoning_tokens == 4
    assert usage.prompt_tokens_details.cached_tokens == 7
    assert usage.model_extra["prompt_cache_hit_tokens"] == 5
    assert usage.model_extra["prompt_cache_miss_tokens"] == usage.prompt_tokens - 5


def test_openai_stream_accumulates_to_the_non_streamed_answer(deepseek) -> None:
    prompt = "weather? [[tag=oa-acc reasoning=3 tool=get_weather,get_time]]"
    answer = deepseek.chat.completions.create(
        model="deepseek-v4-pro", messages=_user(prompt), tools=WEATHER_TOOLS
    )
    message = answer.choices[0].message
    assert message.reasoning_content == expected_reasoning(prompt)
    assert message.content is None
    assert [c.model_dump() for c in message.tool_calls] == expected_tool_calls(prompt)
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.usage.completion_tokens_details.reasoning_tokens == 3
    assert answer.usage.prompt_tokens_details is None  # no `cached=`: not reported

    # The SDK's own stream helper merges every delta field, unknown ones included.
    with deepseek.chat.completions.stream(
        model="deepseek-v4-pro", messages=_user(prompt), tools=WEATHER_TOOLS
    ) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message
    assert streamed.model_extra["reasoning_content"] == message.reasoning_content
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in streamed.tool_calls] == [
        (c["id"], c["type"], c["function"]["name"], c["function"]["arguments"])
        for c in expected_tool_calls(prompt)
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_requires_reasoning_back_on_tool_call_turns(deepseek, fake_llm) -> None:
    prompt = "weather? [[tag=oa-back reasoning=2 tool=get_weather require_reasoning=1]]"
    first = deepseek.chat.completions.create(
        model="deepseek-v4-flash", messages=_user(prompt), tools=WEATHER_TOOLS
    )
    assistant = first.choices[0].message.model_dump(exclude_none=True)
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
        for call in first.choices[0].message.tool_calls
    ]

    without = {k: v for k, v in assistant.items() if k != "reasoning_content"}
    with pytest.raises(openai.BadRequestError) as refused:
        deepseek.chat.completions.create(
            model="deepseek-v4-flash",
            messages=[*_user(prompt), without, *results],
            tools=WEATHER_TOOLS,
        )
    assert refused.value.status_code == 400
    assert refused.value.body == REASONING_MISSING["error"]
    assert refused.value.code == "invalid_request_error"

    assert assistant["reasoning_content"] == expected_reasoning(prompt)
    second = deepseek.chat.completions.create(
        model="deepseek-v4-flash", messages=[*_user(prompt), assistant, *results]
    )
    # Answering tool results: text this time, still thinking first.
    assert second.choices[0].message.content == expected_reply(prompt)
    assert second.choices[0].message.reasoning_content == expected_reasoning(prompt)
    assert second.choices[0].finish_reason == "stop"
    records = fake_llm.requests_tagged("oa-back")
    assert [r["reasoning_sent_back"] for r in records] == [
        [],
        [None],
        [expected_reasoning(prompt)],
    ]


def test_openai_plain_answer_is_unchanged(deepseek) -> None:
    prompt = "hi [[tag=oa-plain tokens=2]]"
    answer = deepseek.chat.completions.create(model="deepseek-v4-flash", messages=_user(prompt))
    assert answer.choices[0].message.content == expected_reply(prompt)
    assert not (answer.choices[0].message.model_extra or {}).get("reasoning_content")
    assert answer.usage.model_dump(exclude_none=True).keys() == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }


def test_openai_models_list(deepseek, fake_llm) -> None:
    assert [m.id for m in deepseek.models.list()] == DEFAULT_MODELS["sk-fake-deepseek"]
    fake_llm.models["sk-fake-models"] = ["kimi-k2.6", "moonshot-v1-32k"]
    kimi = openai.OpenAI(
        base_url=fake_llm.base_url + "/v1", api_key="sk-fake-models", max_retries=0
    )
    models = list(kimi.models.list())
    assert [(m.id, m.object) for m in models] == [
        ("kimi-k2.6", "model"),
        ("moonshot-v1-32k", "model"),
    ]


# Anthropic Messages -----------------------------------------------------------


def test_anthropic_thinking_redacted_and_tool_use(claude) -> None:
    prompt = (
        "weather? [[tag=an-tools reasoning=3 redacted=1 tool=get_weather,get_time "
        "cached=11 cache_write=4]]"
    )
    message = claude.messages.create(
        model="claude-opus-4-7",
        max_tokens=2048,
        thinking=THINKING,
        tools=CLAUDE_TOOLS,
        messages=_user(prompt),
    )
    thinking, redacted, *calls = message.content
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert thinking.thinking == expected_reasoning(prompt)
    assert thinking.signature == thinking_signature(thinking.thinking)
    assert isinstance(redacted, anthropic.types.RedactedThinkingBlock)
    assert redacted.data == redacted_data(prompt)
    assert all(isinstance(c, anthropic.types.ToolUseBlock) for c in calls)
    assert [(c.id, c.name, c.input) for c in calls] == [
        ("toolu_0_an-tools", "get_weather", {"city": "city-an-tools", "call": 0}),
        ("toolu_1_an-tools", "get_time", {"city": "city-an-tools", "call": 1}),
    ]
    assert message.stop_reason == "tool_use"
    assert message.usage.cache_read_input_tokens == 11
    assert message.usage.cache_creation_input_tokens == 4
    assert message.usage.output_tokens > 3


@pytest.mark.parametrize(
    "knobs",
    [
        "tokens=4",
        "reasoning=3 tokens=2 cached=9",
        "reasoning=2 redacted=1 tool=get_weather,get_time cached=3 cache_write=8",
    ],
)
def test_anthropic_stream_accumulates_to_the_non_streamed_answer(claude, knobs) -> None:
    prompt = f"go [[tag=an-stream {knobs}]]"
    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 2048,
        "thinking": THINKING,
        "tools": CLAUDE_TOOLS,
        "messages": _user(prompt),
    }
    answer = claude.messages.create(**request)
    kinds: list[str] = []
    with claude.messages.stream(**request) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "signature":
                # The signature closes its thinking block, after all of its text.
                assert event.signature == thinking_signature(expected_reasoning(prompt))
        final = stream.get_final_message()
    assert final.model_dump(exclude={"id"}) == answer.model_dump(exclude={"id"})
    assert final.usage.input_tokens == answer.usage.input_tokens > 0
    thinking_events = kinds.count("thinking")
    assert thinking_events == int(dict(p.split("=") for p in knobs.split()).get("reasoning", 0))
    if thinking_events:
        assert kinds.index("signature") > max(i for i, k in enumerate(kinds) if k == "thinking")
    if answer.stop_reason == "end_turn":
        assert final.content[-1].text == expected_reply(prompt)


def test_anthropic_raw_stream_order(claude, fake_llm) -> None:
    prompt = "go [[tag=an-raw reasoning=2 tokens=2 cached=5 cache_write=1]]"
    events = list(
        claude.messages.create(
            model="claude-opus-4-7",
            max_tokens=2048,
            thinking=THINKING,
            messages=_user(prompt),
            stream=True,
        )
    )
    names = [
        e.type + (f":{e.delta.type}" if e.type == "content_block_delta" else "") for e in events
    ]
    assert names == [
        "message_start",
        "content_block_start",  # then a `ping`, which the SDK skips
        "content_block_delta:thinking_delta",
        "content_block_delta:thinking_delta",
        "content_block_delta:signature_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta:text_delta",
        "content_block_delta:text_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0].message.usage, events[-2].usage
    assert (start.cache_read_input_tokens, start.cache_creation_input_tokens) == (5, 1)
    assert (delta.cache_read_input_tokens, delta.cache_creation_input_tokens) == (5, 1)
    assert events[1].content_block.type == "thinking"
    assert events[-2].delta.stop_reason == "end_turn"
    wire = [e.split(b"\n")[0] for e in _recorded_stream(fake_llm, prompt)]
    assert wire[:3] == [b"event: message_start", b"event: content_block_start", b"event: ping"]


def test_anthropic_requires_the_signed_thinking_back(claude, fake_llm) -> None:
    prompt = "weather? [[tag=an-sig reasoning=3 tool=get_weather require_signature=1]]"
    request = {
        "model": "claude-opus-4-7",
        "max_tokens": 2048,
        "thinking": THINKING,
        "tools": CLAUDE_TOOLS,
    }
    with claude.messages.stream(**request, messages=_user(prompt)) as stream:
        first = stream.get_final_message()
    blocks = [b.model_dump(exclude_none=True) for b in first.content]
    thinking, call = blocks
    results = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "sunny"}],
    }

    def turn(assistant_content: list[dict]) -> anthropic.types.Message:
        return claude.messages.create(
            **request,
            messages=[
                *_user(prompt),
                {"role": "assistant", "content": assistant_content},
                results,
            ],
        )

    refusals = []
    for content in (
        [call],
        [{**thinking, "signature": ""}, call],
        [{**thinking, "thinking": thinking["thinking"] + "edited"}, call],
    ):
        with pytest.raises(anthropic.BadRequestError) as refused:
            turn(content)
        assert refused.value.status_code == 400
        assert refused.value.body["type"] == "error"
        assert refused.value.body["error"]["type"] == "invalid_request_error"
        refusals.append(refused.value.body["error"]["message"])
    assert "Expected `thinking` or `redacted_thinking`" in refusals[0]
    assert refusals[1] == "messages.1.content.0.thinking.signature: Field required"
    assert refusals[2] == "messages.1.content.0: Invalid `signature` in `thinking` block"

    answer = turn(blocks)
    assert [b.type for b in answer.content] == ["text"]
    assert answer.content[0].text == expected_reply(prompt)
    assert answer.stop_reason == "end_turn"
    sent_back = [r["thinking_sent_back"] for r in fake_llm.requests_tagged("an-sig")]
    assert sent_back[0] == [] and sent_back[-1] == [thinking]


def test_anthropic_models_list_pages(claude, fake_llm) -> None:
    ids = [m.id for m in claude.models.list()]
    assert ids == DEFAULT_MODELS["sk-ant-fake"]
    fake_llm.models["sk-ant-paged"] = [f"claude-model-{i}" for i in range(5)]
    paged = anthropic.Anthropic(base_url=fake_llm.base_url, api_key="sk-ant-paged", max_retries=0)
    page = paged.models.list(limit=2)
    assert [m.id for m in page.data] == ["claude-model-0", "claude-model-1"]
    assert page.has_more and page.first_id == "claude-model-0" and page.last_id == "claude-model-1"
    first = page.data[0]
    assert first.type == "model" and first.display_name == "Claude Model 0"
    assert isinstance(first.created_at, datetime)
    # The SDK follows `has_more` / `last_id` to the end.
    assert [m.id for m in paged.models.list(limit=2)] == fake_llm.models["sk-ant-paged"]
    record = [r for r in fake_llm.requests if r["api_key"] == "sk-ant-paged"]
    assert [r["protocol"] for r in record] == ["anthropic"] * 4


# The checks can fail: the SDKs refuse or mis-accumulate a stream out of order ------


def _recorded_stream(fake_llm: FakeLLM, prompt: str) -> list[bytes]:
    body = {
        "model": "claude-opus-4-7",
        "max_tokens": 1024,
        "stream": True,
        "messages": _user(prompt),
    }
    with httpx.stream("POST", fake_llm.base_url + "/v1/messages", json=body) as answer:
        text = answer.read().decode()
    return [part.encode() + b"\n\n" for part in text.split("\n\n") if part]


@pytest.fixture(scope="module")
def replay() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A server that answers `POST /<name>/v1/messages` with the bytes stored under name."""
    streams: dict[str, bytes] = {}

    async def answer(request: Request) -> Response:
        return Response(streams[request.path_params["name"]], media_type="text/event-stream")

    app = Starlette(routes=[Route("/{name}/v1/messages", answer, methods=["POST"])])
    with serve_in_thread(app) as base_url:
        yield base_url, streams


def _replayed(replay, name: str, events: list[bytes]) -> anthropic.Anthropic:
    base_url, streams = replay
    streams[name] = b"".join(events)
    return anthropic.Anthropic(api_key="x", base_url=f"{base_url}/{name}", max_retries=0)


def test_a_broken_stream_breaks_the_sdk(fake_llm, replay) -> None:
    prompt = "go [[tag=an-broken reasoning=2 tokens=2]]"
    events = _recorded_stream(fake_llm, prompt)
    request = {"model": "m", "max_tokens": 1, "messages": _user(prompt)}

    with _replayed(replay, "good", events).messages.stream(**request) as stream:
        good = stream.get_final_message()
    assert good.content[0].signature == thinking_signature(expected_reasoning(prompt))

    without_signature = [e for e in events if b"signature_delta" not in e]
    with _replayed(replay, "unsigned", without_signature).messages.stream(**request) as stream:
        broken = stream.get_final_message()
    assert broken.content[0].model_dump() != good.content[0].model_dump()

    delta_first = [events[0], events[3], *events[1:3], *events[4:]]
    with pytest.raises((IndexError, RuntimeError, ValueError)):
        with _replayed(replay, "delta-first", delta_first).messages.stream(**request) as stream:
            stream.get_final_message()
    assert json.loads(events[3].split(b"data: ")[1])["type"] == "content_block_delta"
