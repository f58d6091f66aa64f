"""What `/v1/chat/completions` takes for today's providers, through the running stack:
tools and tool results on Anthropic models, `reasoning_effort` and a provider's own
`thinking` object stored in the generation's request for the worker, and assistant
turns that carry their reasoning back."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import select

from core.db import worker_session
from models import Generation
from tests.fakes import anthropic_protocol
from tests.fakes.llm import FakeLLM
from tests.fakes.openai_protocol import expected_reply

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


def _stored_requests(user_id) -> list[dict]:
    with worker_session() as session:
        return list(
            session.scalars(
                select(Generation.request)
                .where(Generation.user_id == user_id)
                .order_by(Generation.created_at)
            )
        )


def test_claude_takes_tools_and_tool_results(api_server, make_user, fake_llm: FakeLLM) -> None:
    user = make_user(plan="max")
    client = openai.OpenAI(base_url=api_server + "/v1", api_key=user.access_token, max_retries=0)
    prompt = "weather? [[tag=req-claude-tools tool=get_weather]]"
    messages = [{"role": "user", "content": prompt}]

    calls: dict[int, dict] = {}
    finish = []
    for chunk in client.chat.completions.create(
        model="claude-sonnet-5-5",
        messages=messages,
        tools=WEATHER_TOOLS,
        tool_choice="auto",
        reasoning_effort="high",
        stream=True,
    ):
        finish.append(chunk.choices[0].finish_reason)
        for fragment in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += fragment.id or ""
            call["name"] += fragment.function.name or ""
            call["arguments"] += fragment.function.arguments or ""
    (block,) = [b for b in anthropic_protocol.expected_blocks(prompt) if b["type"] == "tool_use"]
    assert list(calls.values()) == [
        {
            "id": block["id"],
            "name": "get_weather",
            "arguments": '{"city": "city-req-claude-tools", "call": 0}',
        }
    ]
    assert [reason for reason in finish if reason] == ["tool_calls"]
    first = fake_llm.requests_tagged("req-claude-tools")[0]["body"]
    assert first["tools"][0]["name"] == "get_weather"
    assert first["tool_choice"] == {"type": "auto"}
    assert first["output_config"] == {"effort": "high"}

    follow_up = "and so? [[tag=req-claude-after tokens=3]]"
    tool_turn = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": calls[0]["id"],
                "type": "function",
                "function": {"name": calls[0]["name"], "arguments": calls[0]["arguments"]},
            }
        ],
        "reasoning_content": "",
        "thinking_blocks": [{"type": "redacted_thinking", "data": "opaque"}],
    }
    answer = client.chat.completions.create(
        model="claude-sonnet-5-5",
        messages=[
            {"role": "user", "content": follow_up},
            tool_turn,
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
        ],
        tools=WEATHER_TOOLS,
        extra_body={"thinking": {"type": "adaptive"}},
    )
    assert answer.choices[0].message.content == expected_reply(follow_up)
    record = fake_llm.requests_tagged("req-claude-after")[0]
    assert record["thinking_sent_back"] == [{"type": "redacted_thinking", "data": "opaque"}]
    assert record["body"]["thinking"] == {"type": "adaptive"}
    assert record["body"]["messages"][2]["content"][0]["type"] == "tool_result"

    stored = _stored_requests(user.id)
    assert stored[0]["reasoning_effort"] == "high" and stored[0]["tool_choice"] == "auto"
    assert stored[1]["thinking"] == {"type": "adaptive"}
    kept = stored[1]["messages"][1]
    assert kept["thinking_blocks"] == tool_turn["thinking_blocks"]
    assert kept["reasoning_content"] == ""


def test_reasoning_effort_is_checked_in_openais_shape(api_server, make_user) -> None:
    user = make_user(plan="pro")
    client = openai.OpenAI(base_url=api_server + "/v1", api_key=user.access_token, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="deepseek-flash",
            messages=[{"role": "user", "content": "hi"}],
            reasoning_effort="extreme",  # type: ignore[arg-type]
        )
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "validation_error" and error["param"] == "reasoning_effort"


def test_deepseek_reasoning_effort_reaches_the_provider(
    api_server, make_user, fake_llm: FakeLLM
) -> None:
    user = make_user(plan="pro")
    client = openai.OpenAI(base_url=api_server + "/v1", api_key=user.access_token, max_retries=0)
    prompt = "hi [[tag=req-ds-effort tokens=2]]"
    answer = client.chat.completions.create(
        model="deepseek-flash",
        messages=[{"role": "user", "content": prompt}],
        reasoning_effort="none",
    )
    assert answer.choices[0].message.content == expected_reply(prompt)
    body = fake_llm.requests_tagged("req-ds-effort")[0]["body"]
    assert body["thinking"] == {"type": "disabled"} and "reasoning_effort" not in body
    assert _stored_requests(user.id)[0]["reasoning_effort"] == "none"
