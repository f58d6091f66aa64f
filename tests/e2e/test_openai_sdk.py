"""The official `openai` SDK against the running stack (API, worker, fake upstream):
sync and async, stream and not, model list, 429/402 errors, disconnect billing,
and usage history that adds up to the generations made."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import openai
import pytest
from sqlalchemy import func, select

from core.chat import cost_of
from core.config import settings
from core.db import worker_session
from core.plans import listed_models_for_plan
from models import Generation, UsageRecord
from tests.fakes.llm import FakeLLM, expected_tool_calls
from tests.fakes.openai_protocol import expected_reasoning, expected_reply

pytestmark = pytest.mark.usefixtures("celery_worker")


async def _api_key(client: httpx.AsyncClient, user, **body) -> str:
    answer = await client.post(
        "/v1/developer/api-keys", json={"name": "sdk", **body}, headers=user.headers
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["key"]


def _wait_until_finished(user_id, expected: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with worker_session() as session:
            open_count = session.scalar(
                select(func.count(Generation.id)).where(
                    Generation.user_id == user_id, Generation.status.in_(("queued", "running"))
                )
            )
            total = session.scalar(
                select(func.count(Generation.id)).where(Generation.user_id == user_id)
            )
        if open_count == 0 and total == expected:
            return
        time.sleep(0.1)
    raise AssertionError("generations did not finish")


async def test_sdk_sync_and_async(client, api_server, make_user) -> None:
    user = make_user(plan="pro")
    key = await _api_key(client, user)
    sync = openai.OpenAI(base_url=api_server + "/v1", api_key=key, max_retries=0)
    prompt = "hello [[tag=sync tokens=5]]"

    completion = sync.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": prompt}]
    )
    assert completion.choices[0].message.content == expected_reply(prompt)
    assert completion.usage.completion_tokens == 5 and completion.usage.prompt_tokens > 0
    raw = sync.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}], top_p=0.5, stop=["zz"]
    )
    assert int(raw.headers["x-ratelimit-limit"]) == 60
    assert raw.parse().model == settings.plans["pro"].default_model == "kimi-k2.6"

    stream_prompt = "stream [[tag=sdkstream tokens=7]]"
    chunks = list(
        sync.chat.completions.create(
            model="deepseek-chat",
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": stream_prompt},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_reply(stream_prompt)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7
    assert [m.id for m in sync.models.list()] == [n for n, _ in listed_models_for_plan("pro")]

    async_client = openai.AsyncOpenAI(base_url=api_server + "/v1", api_key=key, max_retries=0)
    answer = await async_client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": prompt}]
    )
    assert answer.choices[0].message.content == expected_reply(prompt)
    streamed = await async_client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": stream_prompt}], stream=True
    )
    pieces = [c async for c in streamed]
    assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices) == (
        expected_reply(stream_prompt)
    )
    assert all(c.usage is None for c in pieces)

    with pytest.raises(openai.PermissionDeniedError) as denied:
        sync.chat.completions.create(
            model="claude-3-5-sonnet-latest", messages=[{"role": "user", "content": "hi"}]
        )
    assert denied.value.code == "model_not_allowed"

    # Usage history equals what these generations were billed, per day.
    _wait_until_finished(user.id, 5)
    with worker_session() as session:
        generations = session.scalars(select(Generation).where(Generation.user_id == user.id)).all()
    answer = await client.get(
        "/v1/developer/usage/history?days=2", headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200, answer.text
    history = answer.json()
    today = history["daily_usage"][-1]
    assert [d["requests"] for d in history["daily_usage"]] == [0, 5]
    assert today["date"] == datetime.now(UTC).date().isoformat()
    assert today["prompt_tokens"] == sum(g.prompt_tokens for g in generations)
    assert today["completion_tokens"] == sum(g.completion_tokens for g in generations) == 29
    expected_cost = sum(
        (cost_of(g.model, g.prompt_tokens, g.completion_tokens) for g in generations), Decimal(0)
    )
    assert Decimal(str(today["cost"])) == expected_cost > 0
    assert Decimal(str(history["total_cost"])) == expected_cost


WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name in ("get_weather", "get_time")
]


def test_sdk_tool_calls_and_finish_reasons(api_server, make_user, fake_llm: FakeLLM) -> None:
    user = make_user(plan="pro")
    client = openai.OpenAI(base_url=api_server + "/v1", api_key=user.access_token, max_retries=0)
    # Arguments come in five-character fragments 60 ms apart, so they cross several flushes.
    prompt = "weather and time? [[tag=tools tool=get_weather,get_time delay=0.06]]"
    messages = [{"role": "user", "content": prompt}]
    wanted = expected_tool_calls(prompt)

    calls: dict[int, dict] = {}
    argument_chunks, finish_reasons = 0, []
    for chunk in client.chat.completions.create(
        model="deepseek-chat", messages=messages, tools=WEATHER_TOOLS, stream=True
    ):
        choice = chunk.choices[0]
        finish_reasons.append(choice.finish_reason)
        for fragment in choice.delta.tool_calls or []:
            call = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += fragment.id or ""
            call["name"] += fragment.function.name or ""
            call["arguments"] += fragment.function.arguments or ""
            argument_chunks += bool(fragment.function.arguments)
        assert not choice.delta.content
    assert [calls[index] for index in sorted(calls)] == [
        {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in wanted
    ]
    assert argument_chunks > len(wanted)
    assert [reason for reason in finish_reasons if reason] == ["tool_calls"]
    sent = fake_llm.requests_tagged("tools")[0]["body"]
    assert sent["tools"] == WEATHER_TOOLS

    answer = client.chat.completions.create(
        model="deepseek-chat", messages=messages, tools=WEATHER_TOOLS, tool_choice="auto"
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert [c.model_dump() for c in choice.message.tool_calls] == wanted
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {
        "city": "city-tools",
        "call": 0,
    }

    # The tool results go back as the SDK sends them; an upstream without usage is estimated.
    follow_up = "now answer [[tag=after tokens=3 no_usage=1 finish=length]]"
    second = client.chat.completions.create(
        model="deepseek-chat",
        messages=[
            *messages,
            choice.message.model_dump(exclude_none=True),
            *(
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
                for call in choice.message.tool_calls
            ),
            {"role": "user", "content": follow_up},
        ],
        tools=WEATHER_TOOLS,
    )
    assert second.choices[0].message.content == expected_reply(follow_up)
    assert second.choices[0].finish_reason == "length"
    assert second.usage.prompt_tokens > 0 and second.usage.completion_tokens > 0
    relayed = fake_llm.requests_tagged("after")[0]["body"]["messages"]
    assert relayed[1]["tool_calls"] == wanted and "content" not in relayed[1]
    assert relayed[2] == {"role": "tool", "tool_call_id": wanted[0]["id"], "content": "sunny"}
    streamed = client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": follow_up}], stream=True
    )
    assert [c.choices[0].finish_reason for c in streamed][-1] == "length"


async def test_sdk_errors_on_429_and_402(client, api_server, make_user) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    user = make_user(
        quota_period_start_at=now - timedelta(days=3),
        quota_reset_at=now + timedelta(days=27),
        quota_used=9_998,
    )
    limited = openai.OpenAI(
        base_url=api_server + "/v1",
        api_key=await _api_key(client, user, rate_limit=1),
        max_retries=0,
    )
    message = [{"role": "user", "content": "hi [[tokens=1]]"}]
    limited.chat.completions.create(model="deepseek-chat", messages=message)
    with pytest.raises(openai.RateLimitError) as rate_limited:
        limited.chat.completions.create(model="deepseek-chat", messages=message)
    assert rate_limited.value.code == "rate_limited"
    assert 1 <= int(rate_limited.value.response.headers["retry-after"]) <= 60
    assert rate_limited.value.response.headers["x-ratelimit-remaining"] == "0"

    other = openai.OpenAI(
        base_url=api_server + "/v1", api_key=await _api_key(client, user), max_retries=0
    )
    other.chat.completions.create(model="deepseek-chat", messages=message)
    with pytest.raises(openai.APIStatusError) as spent:
        other.chat.completions.create(model="deepseek-chat", messages=message)
    assert spent.value.status_code == 402 and spent.value.code == "quota_exceeded"
    retry_after = int(spent.value.response.headers["retry-after"])
    assert timedelta(days=26) < timedelta(seconds=retry_after) <= timedelta(days=27)


async def test_disconnected_stream_is_billed(client, make_user) -> None:
    user = make_user()
    key = await _api_key(client, user)
    prompt = "long [[tag=cut tokens=30 delay=0.05]]"
    async with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "deepseek-chat",
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
        },
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "20"
        lines = response.aiter_lines()
        seen = 0
        async for line in lines:
            seen += line.startswith("data: ")
            if seen == 3:
                break
    _wait_until_finished(user.id, 1)
    with worker_session() as session:
        record = session.scalar(select(UsageRecord).where(UsageRecord.user_id == user.id))
        generation = session.scalar(select(Generation).where(Generation.user_id == user.id))
    assert generation.status == "done" and generation.kind == "completion"
    assert generation.conversation_id is None and not generation.usage_estimated
    assert record.completion_tokens == 30 and record.generation_id == generation.id
    assert record.api_key_id is not None and record.cost == cost_of(
        "deepseek-chat", record.prompt_tokens, 30
    )


async def test_sdk_reasoning_content_and_usage_details(client, api_server, make_user) -> None:
    user = make_user()
    key = await _api_key(client, user)
    sdk = openai.OpenAI(base_url=api_server + "/v1", api_key=key, max_retries=0)
    prompt = "think [[tag=sdkthink reasoning=6 tokens=4 prompt_tokens=400 cached=300]]"

    chunks = list(
        sdk.chat.completions.create(
            model="deepseek-flash",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
            reasoning_effort="low",
        )
    )
    pieces = [
        (getattr(c.choices[0].delta, "reasoning_content", None), c.choices[0].delta.content)
        for c in chunks
        if c.choices
    ]
    thinking = [i for i, (reasoning, _) in enumerate(pieces) if reasoning]
    replying = [i for i, (_, content) in enumerate(pieces) if content]
    assert thinking and replying and max(thinking) < min(replying)
    assert "".join(r for r, _ in pieces if r) == expected_reasoning(prompt)
    assert "".join(c for _, c in pieces if c) == expected_reply(prompt)
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens == 400
    assert usage.prompt_tokens_details.cached_tokens == 300
    assert usage.completion_tokens_details.reasoning_tokens == 6

    answer = sdk.chat.completions.create(
        model="deepseek-flash", messages=[{"role": "user", "content": prompt}]
    )
    message = answer.choices[0].message
    assert message.content == expected_reply(prompt)
    assert getattr(message, "reasoning_content", None) == expected_reasoning(prompt)
    assert answer.usage.prompt_tokens_details.cached_tokens == 300
    assert answer.usage.completion_tokens_details.reasoning_tokens == 6


async def test_a_cached_request_costs_less(client, api_server, make_user) -> None:
    user = make_user()
    key = await _api_key(client, user)
    sdk = openai.OpenAI(base_url=api_server + "/v1", api_key=key, max_retries=0)
    for knobs in ("tag=cold prompt_tokens=2000", "tag=warm prompt_tokens=2000 cache_hit=1800"):
        sdk.chat.completions.create(
            model="deepseek-flash",
            messages=[{"role": "user", "content": f"same question [[{knobs} tokens=5]]"}],
        )
    _wait_until_finished(user.id, 2)
    with worker_session() as session:
        cold, warm = session.scalars(
            select(UsageRecord).where(UsageRecord.user_id == user.id).order_by(UsageRecord.id)
        ).all()
    assert (cold.prompt_tokens, cold.cached_tokens) == (2000, 0)
    assert (warm.prompt_tokens, warm.cached_tokens) == (2000, 1800)
    assert warm.cost < cold.cost
    assert warm.cost == cost_of("deepseek-flash", 2000, 5, cached_tokens=1800)
