"""The provider adapters called directly (no Celery) against the fake upstream: what
each yields from today's streams (reasoning, signed thinking, tool-call fragments,
usage with cache and reasoning tokens) and what each sends back in later turns."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes import anthropic_protocol
from tests.fakes.llm import FakeLLM, _prompt_tokens, expected_tool_calls
from tests.fakes.openai_protocol import expected_reasoning, expected_tokens
from workers.providers.anthropic import Anthropic, translate_messages
from workers.providers.base import (
    Finish,
    Provider,
    ProviderCall,
    ProviderError,
    Reasoning,
    StreamItem,
    ThinkingBlock,
    Usage,
)
from workers.providers.openai_compat import OpenAICompatible
from workers.providers.tool_calls import ToolCallDelta, assemble

DEEPSEEK = OpenAICompatible("deepseek", thinking_mode=True)
USER_ENDPOINT = OpenAICompatible("custom")
CLAUDE = Anthropic()
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Overrides tests/conftest.py's: nothing here touches PostgreSQL or Redis."""


def openai_call(fake: FakeLLM, messages: list[dict[str, Any]], **fields: Any) -> ProviderCall:
    return ProviderCall(
        base_url=fake.base_url,
        api_key="sk-fake-deepseek",
        model="deepseek-flash",
        messages=messages,
        **fields,
    )


def claude_call(fake: FakeLLM, messages: list[dict[str, Any]], **fields: Any) -> ProviderCall:
    fields.setdefault("model", "claude-sonnet-5-5")
    return ProviderCall(base_url=fake.base_url, api_key="sk-ant-fake", messages=messages, **fields)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def last_request(fake: FakeLLM, tag: str) -> dict[str, Any]:
    return fake.requests_tagged(tag)[-1]


async def collect(adapter: Provider, call: ProviderCall) -> list[StreamItem]:
    """What an adapter's stream emits, in order, read to its end on this test's loop."""
    items: list[StreamItem] = []
    await adapter.stream(call, items.append)
    return items


def reasoning_text(items: list[StreamItem]) -> str:
    return "".join(item.text for item in items if isinstance(item, Reasoning))


def tool_calls_of(items: list[StreamItem]) -> list[dict[str, Any]]:
    return assemble([item.fragment for item in items if isinstance(item, ToolCallDelta)])


def kinds(items: list[StreamItem]) -> list[str]:
    """The item kinds in order, neighbours of one kind folded: the stream's shape."""
    shape: list[str] = []
    for item in items:
        name = "text" if isinstance(item, str) else type(item).__name__
        if not shape or shape[-1] != name:
            shape.append(name)
    return shape


# --- OpenAI-compatible: DeepSeek, Kimi, users' endpoints -----------------------


async def test_deepseek_streams_reasoning_before_text_with_cache_and_reasoning_usage(
    fake_llm,
) -> None:
    prompt = "think [[tag=ad-reason reasoning=3 tokens=4 cache_hit=7]]"
    items = await collect(DEEPSEEK, openai_call(fake_llm, [user(prompt)]))

    assert kinds(items) == ["Reasoning", "text", "Finish", "Usage"]
    assert reasoning_text(items) == expected_reasoning(prompt)
    assert "".join(i for i in items if isinstance(i, str)) == "".join(expected_tokens(prompt))
    assert items[-2] == Finish("stop")
    usage = items[-1]
    assert isinstance(usage, Usage)
    assert (usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens) == (7, 7, 3)
    assert usage.prompt_tokens and usage.cache_write_tokens is None


async def test_openai_cached_tokens_come_from_prompt_tokens_details(fake_llm) -> None:
    prompt = "again [[tag=ad-cached tokens=2 cached=5]]"
    items = await collect(USER_ENDPOINT, openai_call(fake_llm, [user(prompt)]))
    usage = items[-1]
    assert isinstance(usage, Usage)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (5, None)
    text, complete_usage = USER_ENDPOINT.complete(openai_call(fake_llm, [user(prompt)]))
    assert text == "".join(expected_tokens(prompt))
    assert complete_usage.cached_tokens == 5


def test_complete_returns_the_text_without_the_reasoning(fake_llm) -> None:
    prompt = "title? [[tag=ad-complete reasoning=2 tokens=3]]"
    text, usage = DEEPSEEK.complete(openai_call(fake_llm, [user(prompt)]))
    assert text == "".join(expected_tokens(prompt))
    assert usage.reasoning_tokens == 2


async def test_deepseek_tool_round_trip_sends_reasoning_back_only_on_the_tool_call_turn(
    fake_llm,
) -> None:
    prompt = (
        "weather? [[tag=ad-ds-tools reasoning=2 tool=get_weather,get_time require_reasoning=1]]"
    )
    first = await collect(
        DEEPSEEK, openai_call(fake_llm, [user(prompt)], extra={"tools": WEATHER_TOOLS})
    )
    assert kinds(first) == ["Reasoning", "ToolCallDelta", "Finish", "Usage"]
    assert Finish("tool_calls") in first
    calls = tool_calls_of(first)
    assert calls == expected_tool_calls(prompt)
    reasoning = reasoning_text(first)

    tool_turn = {
        "role": "assistant",
        "tool_calls": calls,
        "reasoning_content": reasoning,
    }
    results = [{"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in calls]
    second = await collect(DEEPSEEK, openai_call(fake_llm, [user(prompt), tool_turn, *results]))
    assert "".join(i for i in second if isinstance(i, str)) == "".join(expected_tokens(prompt))
    assert last_request(fake_llm, "ad-ds-tools")["reasoning_sent_back"] == [reasoning]

    # Without its reasoning the tool-call turn is refused, as DeepSeek refuses it.
    bare = {k: v for k, v in tool_turn.items() if k != "reasoning_content"}
    with pytest.raises(ProviderError, match="reasoning_content"):
        await collect(USER_ENDPOINT, openai_call(fake_llm, [user(prompt), bare, *results]))
    # DeepSeek's adapter sends an empty one, which DeepSeek takes.
    await collect(DEEPSEEK, openai_call(fake_llm, [user(prompt), bare, *results]))
    assert last_request(fake_llm, "ad-ds-tools")["reasoning_sent_back"] == [""]

    # A plain later turn: the earlier plain answer's reasoning (and any thinking blocks)
    # stay home; the tool-call turn's goes again.
    answer = {
        "role": "assistant",
        "content": "It is sunny.",
        "reasoning_content": "r0 plain",
        "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
    }
    follow_up = "thanks [[tag=ad-ds-plain tokens=2 require_reasoning=1]]"
    history = [user(prompt), tool_turn, *results, answer, user(follow_up)]
    third = await collect(DEEPSEEK, openai_call(fake_llm, history))
    assert third[-2] == Finish("stop")
    sent = last_request(fake_llm, "ad-ds-plain")
    assert sent["body"]["messages"][4] == {"role": "assistant", "content": "It is sunny."}
    assert sent["body"]["messages"][1]["reasoning_content"] == reasoning
    assert all("thinking_blocks" not in m for m in sent["body"]["messages"])
    assert sent["reasoning_sent_back"] == [reasoning]


@pytest.mark.parametrize(
    ("adapter", "effort", "extra", "expected"),
    [
        (DEEPSEEK, "none", {}, {"thinking": {"type": "disabled"}}),
        (DEEPSEEK, "low", {}, {"thinking": {"type": "enabled"}, "reasoning_effort": "low"}),
        (DEEPSEEK, "medium", {}, {"thinking": {"type": "enabled"}, "reasoning_effort": "high"}),
        (DEEPSEEK, "high", {}, {"thinking": {"type": "enabled"}, "reasoning_effort": "high"}),
        # A caller's own thinking object wins.
        (
            DEEPSEEK,
            "high",
            {"thinking": {"type": "disabled"}},
            {"thinking": {"type": "disabled"}, "reasoning_effort": "high"},
        ),
        (DEEPSEEK, "none", {"thinking": {"type": "enabled"}}, {"thinking": {"type": "enabled"}}),
        (DEEPSEEK, None, {}, {}),
        (USER_ENDPOINT, "none", {}, {"reasoning_effort": "none"}),
        (USER_ENDPOINT, "medium", {}, {"reasoning_effort": "medium"}),
    ],
)
def test_reasoning_effort_maps_to_the_openai_compatible_providers_control(
    fake_llm, adapter, effort, extra, expected
) -> None:
    tag = f"ad-effort-{adapter.name}-{effort}-{len(extra)}"
    call = openai_call(
        fake_llm, [user(f"hi [[tag={tag} tokens=1]]")], reasoning_effort=effort, extra=extra
    )
    adapter.complete(call)
    body = last_request(fake_llm, tag)["body"]
    assert {k: body[k] for k in ("thinking", "reasoning_effort") if k in body} == expected


def test_a_stored_reasoning_effort_in_extra_is_mapped_not_passed_raw(fake_llm) -> None:
    call = openai_call(
        fake_llm, [user("hi [[tag=ad-effort-extra tokens=1]]")], extra={"reasoning_effort": "none"}
    )
    DEEPSEEK.complete(call)
    body = last_request(fake_llm, "ad-effort-extra")["body"]
    assert body["thinking"] == {"type": "disabled"} and "reasoning_effort" not in body


# --- Anthropic -----------------------------------------------------------------


async def test_claude_streams_thinking_blocks_with_signature_then_text_and_usage(fake_llm) -> None:
    prompt = "think [[tag=ad-claude reasoning=3 redacted=1 tokens=4 cached=5 cache_write=6]]"
    items = await collect(CLAUDE, claude_call(fake_llm, [user(prompt)]))

    assert kinds(items) == ["Reasoning", "ThinkingBlock", "text", "Finish", "Usage"]
    thinking = expected_reasoning(prompt)
    assert reasoning_text(items) == thinking
    assert [i.block for i in items if isinstance(i, ThinkingBlock)] == [
        {
            "type": "thinking",
            "thinking": thinking,
            "signature": anthropic_protocol.thinking_signature(thinking),
        },
        {"type": "redacted_thinking", "data": anthropic_protocol.redacted_data(prompt)},
    ]
    assert "".join(i for i in items if isinstance(i, str)) == "".join(expected_tokens(prompt))
    assert items[-2] == Finish("stop")
    usage = items[-1]
    assert isinstance(usage, Usage)
    sent = last_request(fake_llm, "ad-claude")["body"]
    assert usage.prompt_tokens == _prompt_tokens(sent) + 5 + 6
    assert (usage.cached_tokens, usage.cache_write_tokens) == (5, 6)
    # Three thinking deltas, the signature, four text deltas (the fake counts deltas).
    assert usage.completion_tokens == 8
    # No effort asked: the model's default thinking, but with its text shown.
    assert sent["thinking"] == {"type": "adaptive", "display": "summarized"}


async def test_claude_tool_round_trip_sends_the_signed_thinking_back_unchanged(fake_llm) -> None:
    prompt = (
        "weather? [[tag=ad-claude-tools reasoning=2 tool=get_weather,get_time require_signature=1]]"
    )
    first = await collect(
        CLAUDE,
        claude_call(
            fake_llm, [user(prompt)], extra={"tools": WEATHER_TOOLS, "tool_choice": "auto"}
        ),
    )
    assert kinds(first) == ["Reasoning", "ThinkingBlock", "ToolCallDelta", "Finish", "Usage"]
    assert Finish("tool_calls") in first
    fragments = [i.fragment for i in first if isinstance(i, ToolCallDelta)]
    assert len(fragments) > 4  # ids and names first, then the input in pieces
    calls = tool_calls_of(first)
    wanted = [b for b in anthropic_protocol.expected_blocks(prompt) if b["type"] == "tool_use"]
    assert calls == [
        {
            "id": b["id"],
            "type": "function",
            "function": {"name": b["name"], "arguments": json.dumps(b["input"])},
        }
        for b in wanted
    ]
    sent = last_request(fake_llm, "ad-claude-tools")["body"]
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER_TOOLS[0]["function"]["parameters"],
            "description": "The weather in a city",
        }
    ]
    assert sent["tool_choice"] == {"type": "auto"}

    blocks = [i.block for i in first if isinstance(i, ThinkingBlock)]
    tool_turn = {
        "role": "assistant",
        "content": None,
        "tool_calls": calls,
        "thinking_blocks": blocks,
    }
    results = [{"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in calls]
    second = await collect(CLAUDE, claude_call(fake_llm, [user(prompt), tool_turn, *results]))
    assert "".join(i for i in second if isinstance(i, str)) == "".join(expected_tokens(prompt))
    record = last_request(fake_llm, "ad-claude-tools")
    assert record["thinking_sent_back"] == blocks
    messages = record["body"]["messages"]
    assert messages[1]["content"] == [
        *blocks,
        *(
            {"type": "tool_use", "id": b["id"], "name": b["name"], "input": b["input"]}
            for b in wanted
        ),
    ]
    assert messages[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": b["id"], "content": "sunny"} for b in wanted
        ],
    }

    # Without the thinking block the turn is refused, as Anthropic refuses it.
    bare = {k: v for k, v in tool_turn.items() if k != "thinking_blocks"}
    with pytest.raises(ProviderError, match="thinking"):
        await collect(CLAUDE, claude_call(fake_llm, [user(prompt), bare, *results]))

    # A plain later turn carries no thinking (nor reasoning text) of earlier plain answers.
    answer = {
        "role": "assistant",
        "content": "Sunny.",
        "reasoning_content": "r",
        "thinking_blocks": [blocks[0]],
    }
    follow_up = "thanks [[tag=ad-claude-plain tokens=2]]"
    await collect(
        CLAUDE, claude_call(fake_llm, [user(prompt), tool_turn, *results, answer, user(follow_up)])
    )
    plain = last_request(fake_llm, "ad-claude-plain")
    assert plain["body"]["messages"][3] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Sunny."}],
    }
    assert plain["thinking_sent_back"] == blocks


@pytest.mark.parametrize(
    ("model", "effort", "extra", "expected"),
    [
        ("claude-haiku-5-5", "none", {}, {"thinking": {"type": "disabled"}}),
        ("claude-sonnet-5-5", "none", {}, {"thinking": {"type": "between_tools"}}),
        (
            "claude-opus-5-5",
            "none",
            {},
            {
                "thinking": {"type": "adaptive", "display": "summarized"},
                "output_config": {"effort": "low"},
            },
        ),
        (
            "claude-sonnet-5-5",
            "medium",
            {},
            {
                "thinking": {"type": "adaptive", "display": "summarized"},
                "output_config": {"effort": "medium"},
            },
        ),
        (
            "claude-sonnet-5-5",
            "high",
            {"thinking": {"type": "adaptive"}},
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}},
        ),
    ],
)
async def test_reasoning_effort_maps_to_claude_thinking(
    fake_llm, model, effort, extra, expected
) -> None:
    tag = f"ad-claude-effort-{model}-{effort}-{len(extra)}"
    call = claude_call(
        fake_llm,
        [user(f"hi [[tag={tag} tokens=1]]")],
        model=model,
        reasoning_effort=effort,
        temperature=0.3,
        extra={**extra, "tools": WEATHER_TOOLS, "tool_choice": "required", "stop": "END"},
    )
    await collect(CLAUDE, call)
    body = last_request(fake_llm, tag)["body"]
    assert {k: body[k] for k in ("thinking", "output_config") if k in body} == expected
    assert body["stop_sequences"] == ["END"]
    if expected["thinking"]["type"] == "disabled":
        # No thinking: sampling and forced tool use as asked.
        assert body["temperature"] == 0.3 and body["tool_choice"] == {"type": "any"}
    else:
        # Anthropic refuses both while thinking.
        assert "temperature" not in body and body["tool_choice"] == {"type": "auto"}


def test_claude_complete_returns_text_and_usage(fake_llm) -> None:
    prompt = "title? [[tag=ad-claude-complete reasoning=2 tokens=3 cached=4]]"
    text, usage = CLAUDE.complete(claude_call(fake_llm, [user(prompt)]))
    assert text == "".join(expected_tokens(prompt))
    assert usage.cached_tokens == 4
    assert "thinking" not in last_request(fake_llm, "ad-claude-complete")["body"]


def test_openai_messages_translate_to_anthropic_blocks() -> None:
    system, messages = translate_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me look.",
                "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "zoom", "arguments": '{"x": 1}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "zoom", "arguments": "not json"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "?"}]},
            {"role": "user", "content": "And now?"},
        ]
    )
    assert system == "Be brief.\n\nBe kind."
    assert messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "t", "signature": "s"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "call_1", "name": "zoom", "input": {"x": 1}},
                {"type": "tool_use", "id": "call_2", "name": "zoom", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "a cat"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "?"},
            ],
        },
        {"role": "user", "content": "And now?"},
    ]
