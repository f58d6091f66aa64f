"""Tool round trips with thinking models through the running stack and the official SDK:
what a later turn must send back of the model's reasoning reaches the provider unchanged
(Claude's signed thinking blocks, DeepSeek's `reasoning_content`), restored by the service
when the client leaves it out, and is left out where the provider does not want it."""

from __future__ import annotations

import openai
import pytest

from tests.fakes.anthropic_protocol import thinking_signature
from tests.fakes.llm import FakeLLM, expected_tool_calls
from tests.fakes.openai_protocol import expected_reasoning, expected_reply

pytestmark = pytest.mark.usefixtures("celery_worker")

WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def _sdk(api_server: str, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=api_server + "/v1", api_key=token, max_retries=0)


def _tool_turn(message, *, keep: tuple[str, ...]) -> dict:
    """The assistant turn as a client sends it back: its tool calls, plus the extra
    fields named in `keep` (a client that rebuilds the turn by hand keeps none)."""
    turn = {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [call.model_dump() for call in message.tool_calls],
    }
    extra = message.model_extra or {}
    turn.update({name: extra[name] for name in keep if name in extra})
    return turn


@pytest.mark.parametrize("client_keeps_blocks", [True, False], ids=["sent-back", "restored"])
def test_claude_tool_round_trip_sends_the_signed_thinking_back(
    api_server, make_user, fake_llm: FakeLLM, client_keeps_blocks: bool
) -> None:
    user = make_user(plan="max")
    sdk = _sdk(api_server, user.access_token)
    tag = f"claude-trip-{client_keeps_blocks}"
    prompt = f"Weather? [[tag={tag} reasoning=4 tool=get_weather require_signature=1]]"
    question = [{"role": "user", "content": prompt}]

    first = sdk.chat.completions.create(
        model="claude-sonnet-5-5", messages=question, tools=WEATHER_TOOLS
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    reasoning = expected_reasoning(prompt)
    assert message.model_extra["reasoning_content"] == reasoning
    assert message.model_extra["thinking_blocks"] == [
        {"type": "thinking", "thinking": reasoning, "signature": thinking_signature(reasoning)}
    ]

    keep = ("thinking_blocks",) if client_keeps_blocks else ()
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"} for call in message.tool_calls
    ]
    second = sdk.chat.completions.create(
        model="claude-sonnet-5-5",
        messages=[*question, _tool_turn(message, keep=keep), *results],
        tools=WEATHER_TOOLS,
    )
    # The fake refuses a tool-result turn without the block, signature unchanged (a 502).
    assert second.choices[0].message.content == expected_reply(prompt)
    record = fake_llm.requests_tagged(tag)[-1]
    assert record["thinking_sent_back"] == message.model_extra["thinking_blocks"]


def test_deepseek_tool_round_trip_sends_reasoning_back_and_a_plain_turn_does_not(
    api_server, make_user, fake_llm: FakeLLM
) -> None:
    user = make_user(plan="free")
    sdk = _sdk(api_server, user.access_token)
    prompt = "Weather? [[tag=ds-trip reasoning=3 tool=get_weather require_reasoning=1]]"
    question = [{"role": "user", "content": prompt}]

    first = sdk.chat.completions.create(
        model="deepseek-chat", messages=question, tools=WEATHER_TOOLS
    )
    message = first.choices[0].message
    assert message.model_extra["reasoning_content"] == expected_reasoning(prompt)
    assert [call.model_dump() for call in message.tool_calls] == expected_tool_calls(prompt)

    results = [
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"} for call in message.tool_calls
    ]
    second = sdk.chat.completions.create(
        model="deepseek-chat",
        messages=[*question, _tool_turn(message, keep=("reasoning_content",)), *results],
        tools=WEATHER_TOOLS,
    )
    answer = second.choices[0].message
    assert answer.content == expected_reply(prompt)
    record = fake_llm.requests_tagged("ds-trip")[-1]
    assert record["reasoning_sent_back"] == [expected_reasoning(prompt)]

    # A plain follow-up: the earlier text turn's reasoning is not sent to DeepSeek.
    follow_up = "Thanks! [[tag=ds-plain tokens=3]]"
    third = sdk.chat.completions.create(
        model="deepseek-chat",
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi!", "reasoning_content": "greet back"},
            {"role": "user", "content": follow_up},
        ],
    )
    assert third.choices[0].message.content == expected_reply(follow_up)
    [plain] = fake_llm.requests_tagged("ds-plain")
    assert all("reasoning_content" not in m for m in plain["body"]["messages"])
