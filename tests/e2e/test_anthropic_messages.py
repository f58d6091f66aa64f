"""The official `anthropic` SDK against the running stack (API, worker, fake upstream):
`/v1/messages` (create, stream, tool use with signed thinking, images) and
`count_tokens`, on a Claude-routed model and an OpenAI-compatible-routed one; errors as
the SDK's exceptions; one quota unit and one usage record per request."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import anthropic
import httpx
import orjson
import pytest
from sqlalchemy import func, select

from core.db import worker_session
from models import Generation, UsageRecord
from tests.fakes.anthropic_protocol import thinking_signature
from tests.fakes.llm import FakeLLM
from tests.fakes.openai_protocol import expected_reasoning, expected_reply

pytestmark = pytest.mark.usefixtures("celery_worker")

CLAUDE = "claude-sonnet-5-5"
DEEPSEEK = "deepseek-flash"
MODELS = pytest.mark.parametrize("model", [CLAUDE, DEEPSEEK])
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
# A 1x1 PNG.
PIXEL = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()


async def _api_key(client: httpx.AsyncClient, user, **body) -> str:
    answer = await client.post(
        "/v1/developer/api-keys", json={"name": "claude", **body}, headers=user.headers
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["key"]


async def _sdk(client: httpx.AsyncClient, api_server: str, user, **key) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=api_server, api_key=await _api_key(client, user, **key), max_retries=0
    )


def _finished(user_id, expected: int, timeout: float = 30.0) -> list[Generation]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with worker_session() as session:
            rows = session.scalars(select(Generation).where(Generation.user_id == user_id)).all()
        if len(rows) == expected and all(g.status not in ("queued", "running") for g in rows):
            return list(rows)
        time.sleep(0.1)
    raise AssertionError("generations did not finish")


def _upstream(fake_llm: FakeLLM, tag: str) -> list[dict]:
    return [r for r in fake_llm.requests_tagged(tag) if not r["is_title"]]


@MODELS
async def test_create_and_stream(client, api_server, make_user, fake_llm, model) -> None:
    user = make_user(plan="max")
    sdk = await _sdk(client, api_server, user)
    tag = f"create-{model}"
    prompt = f"hello [[tag={tag} tokens=5]]"

    message = sdk.messages.create(
        model=model,
        max_tokens=64,
        system="be brief",
        messages=[{"role": "user", "content": prompt}],
        # This SDK has no `temperature` argument; the API still takes it.
        extra_body={"temperature": 0.5},
        stop_sequences=["zz"],
        metadata={"user_id": "end-user-1"},
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == model and message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == expected_reply(prompt)
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.output_tokens == 5 and message.usage.input_tokens > 0

    sent = _upstream(fake_llm, tag)[0]
    body = sent["body"]
    assert body["max_tokens"] == 64
    if model == CLAUDE:
        # Back in Anthropic's own format, nearly as it came.
        assert sent["protocol"] == "anthropic"
        assert body["system"] == "be brief"
        assert body["messages"] == [{"role": "user", "content": prompt}]
        assert body["stop_sequences"] == ["zz"]
        assert body["metadata"] == {"user_id": "end-user-1"}
    else:
        assert sent["protocol"] == "openai"
        assert body["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": prompt},
        ]
        assert body["stop"] == ["zz"] and body["temperature"] == 0.5
        assert body["user"] == "end-user-1"

    stream_prompt = f"stream [[tag=s{tag} tokens=7 delay=0.01]]"
    with sdk.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": stream_prompt}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == expected_reply(stream_prompt)
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 7 and final.usage.input_tokens > 0

    # The exact event sequence, as the wire carries it.
    key = sdk.api_key
    events = []
    async with client.stream(
        "POST",
        "/v1/messages",
        json={
            "model": model,
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": f"raw [[tag=r{tag} tokens=3]]"}],
        },
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = orjson.loads(line.removeprefix("data: "))
                assert data["type"] == name
                events.append(data)
    kinds = [e["type"] for e in events if e["type"] != "ping"]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert events[-2]["usage"]["output_tokens"] == 3

    # One generation, one usage record and one quota unit per request.
    generations = _finished(user.id, 3)
    assert {g.kind for g in generations} == {"messages"}
    with worker_session() as session:
        records = session.scalar(
            select(func.count(UsageRecord.id)).where(UsageRecord.user_id == user.id)
        )
    assert records == 3
    current = await client.get("/v1/developer/usage/current", headers=user.headers)
    assert current.json()["quota_used"] == 3


@MODELS
async def test_tool_use_round_trip_with_thinking(
    client, api_server, make_user, fake_llm, model
) -> None:
    user = make_user(plan="max")
    sdk = await _sdk(client, api_server, user)
    tag = f"tools-{model}"
    require = "require_signature=1" if model == CLAUDE else "require_reasoning=1"
    prompt = f"weather? [[tag={tag} tool=get_weather reasoning=3 {require} delay=0.01]]"
    question = {"role": "user", "content": prompt}
    thinking = {"type": "enabled", "budget_tokens": 2048}

    with sdk.messages.stream(
        model=model, max_tokens=4096, messages=[question], tools=[WEATHER_TOOL], thinking=thinking
    ) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    thought, call = first.content
    assert thought.thinking == expected_reasoning(prompt)
    if model == CLAUDE:
        assert thought.signature == thinking_signature(expected_reasoning(prompt))
        assert "signature" in kinds
    else:
        assert thought.signature == ""
    assert call.name == "get_weather" and call.input == {"city": f"city-{tag}", "call": 0}

    sent = _upstream(fake_llm, tag)[0]["body"]
    if model == CLAUDE:
        assert sent["thinking"] == thinking
        assert sent["tools"] == [WEATHER_TOOL]
    else:
        assert sent["reasoning_effort"] == "low"
        assert sent["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": WEATHER_TOOL["description"],
                    "parameters": WEATHER_TOOL["input_schema"],
                },
            }
        ]

    # The SDK's own message goes back as the assistant turn, thinking included.
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
    answer = sdk.messages.create(
        model=model,
        max_tokens=4096,
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [result]},
        ],
        tools=[WEATHER_TOOL],
        thinking=thinking,
    )
    # The fake thinks again on DeepSeek's tool-result turn (its `reasoning=` knob).
    assert [b.type for b in answer.content][-1] == "text"
    assert answer.content[-1].text == expected_reply(prompt)
    back = _upstream(fake_llm, tag)[-1]
    if model == CLAUDE:
        assert back["thinking_sent_back"] == [
            {"type": "thinking", "thinking": thought.thinking, "signature": thought.signature}
        ]
        assert back["body"]["messages"][-1]["content"] == [
            {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
        ]
    else:
        assert back["reasoning_sent_back"] == [expected_reasoning(prompt)]
        assert back["body"]["messages"][-1] == {
            "role": "tool",
            "tool_call_id": call.id,
            "content": "sunny",
        }

    if model == CLAUDE:
        # A client that loses the signature (a late `signature_delta` it did not apply):
        # the unsigned block is left out and the worker restores the one it kept.
        unsigned = {"type": "thinking", "thinking": thought.thinking, "signature": ""}
        restored = sdk.messages.create(
            model=model,
            max_tokens=4096,
            messages=[
                question,
                {"role": "assistant", "content": [unsigned, call.model_dump()]},
                {"role": "user", "content": [result]},
            ],
            tools=[WEATHER_TOOL],
            thinking=thinking,
        )
        assert restored.content[-1].text == expected_reply(prompt)
        assert _upstream(fake_llm, tag)[-1]["thinking_sent_back"] == back["thinking_sent_back"]

    # Not streamed: the same blocks.
    again = sdk.messages.create(
        model=model, max_tokens=4096, messages=[question], tools=[WEATHER_TOOL], thinking=thinking
    )
    assert [b.type for b in again.content] == ["thinking", "tool_use"]
    assert again.content[0].signature == thought.signature


@MODELS
async def test_image_reaches_the_provider(client, api_server, make_user, fake_llm, model) -> None:
    user = make_user(plan="max")
    sdk = await _sdk(client, api_server, user)
    tag = f"image-{model}"
    prompt = f"what is this? [[tag={tag} tokens=2]]"
    image = {"type": "base64", "media_type": "image/png", "data": PIXEL}
    message = sdk.messages.create(
        model=model,
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [{"type": "image", "source": image}, {"type": "text", "text": prompt}],
            }
        ],
    )
    assert message.content[0].text == expected_reply(prompt)
    content = _upstream(fake_llm, tag)[0]["body"]["messages"][-1]["content"]
    if model == CLAUDE:
        assert content == [
            {"type": "image", "source": image},
            {"type": "text", "text": prompt},
        ]
    else:
        assert content == [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
            {"type": "text", "text": prompt},
        ]


async def test_count_tokens(client, api_server, make_user) -> None:
    user = make_user(plan="max")
    sdk = await _sdk(client, api_server, user)
    short = sdk.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    long = sdk.messages.count_tokens(
        model=DEEPSEEK,
        system="be brief",
        messages=[{"role": "user", "content": "hello " * 400}],
        tools=[WEATHER_TOOL],
    )
    image = sdk.messages.count_tokens(
        model=CLAUDE,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                    },
                    {"type": "text", "text": "hi"},
                ],
            }
        ],
    )
    assert 0 < short.input_tokens < 20 and long.input_tokens > 600
    assert image.input_tokens >= short.input_tokens + 1600
    # An estimate: nothing is generated, nothing is charged.
    quota = await client.get("/v1/developer/usage/current", headers=user.headers)
    assert quota.json()["quota_used"] == 0
    with worker_session() as session:
        assert not session.scalar(select(Generation.id).where(Generation.user_id == user.id))


async def test_bearer_auth_and_a_jwt(client, api_server, make_user) -> None:
    user = make_user(plan="max")
    prompt = "hi [[tokens=2 tag=bearer]]"
    for token in (await _api_key(client, user), user.access_token):
        sdk = anthropic.Anthropic(base_url=api_server, auth_token=token, max_retries=0)
        message = sdk.messages.create(
            model="claude-3-5-sonnet-latest",
            max_tokens=16,
            messages=[{"role": "user", "content": prompt}],
        )
        assert message.content[0].text == expected_reply(prompt)
        # An alias reaches the current model.
        assert message.model == CLAUDE


async def test_errors_as_sdk_exceptions(client, api_server, make_user) -> None:
    question = [{"role": "user", "content": "hi [[tokens=1]]"}]
    bad = anthropic.Anthropic(base_url=api_server, api_key="sk-sb-" + "x" * 40, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        bad.messages.create(model=DEEPSEEK, max_tokens=8, messages=question)
    assert refused.value.body["error"]["type"] == "authentication_error"
    no_key = await client.post("/v1/messages", json={"model": DEEPSEEK, "messages": question})
    assert no_key.status_code == 401
    assert no_key.json()["type"] == "error"

    free = await _sdk(client, api_server, make_user(plan="free"))
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        free.messages.create(model=CLAUDE, max_tokens=8, messages=question)
    assert denied.value.body["error"]["type"] == "permission_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        free.messages.count_tokens(model=CLAUDE, messages=question)

    with pytest.raises(anthropic.BadRequestError) as invalid:
        free.messages.create(model=DEEPSEEK, max_tokens=0, messages=question)
    assert invalid.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": invalid.value.body["error"]["message"],
        },
    }
    assert "max_tokens" in invalid.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        free.messages.create(
            model=DEEPSEEK,
            max_tokens=8,
            messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}],
        )
    # The edge's refusals answer in Anthropic's shape too.
    hostile = await client.post(
        "/v1/messages",
        content=b'{"model": "a\\u0000b", "max_tokens": 8, "messages": []}',
        headers={"x-api-key": free.api_key, "content-type": "application/json"},
    )
    assert hostile.status_code == 400
    assert hostile.json()["error"]["type"] == "invalid_request_error"

    limited = await _sdk(client, api_server, make_user(plan="free"), rate_limit=1)
    limited.messages.create(model=DEEPSEEK, max_tokens=8, messages=question)
    with pytest.raises(anthropic.RateLimitError) as rate_limited:
        limited.messages.create(model=DEEPSEEK, max_tokens=8, messages=question)
    assert rate_limited.value.body["error"]["type"] == "rate_limit_error"
    assert int(rate_limited.value.response.headers["retry-after"]) >= 1


@MODELS
async def test_over_quota_is_refused_in_anthropic_shape(client, api_server, make_user, model):
    now = datetime.now(UTC).replace(microsecond=0)
    plan = "max" if model == CLAUDE else "free"
    monthly = 1_000_000 if plan == "max" else 10_000
    user = make_user(
        plan=plan,
        quota_period_start_at=now - timedelta(days=3),
        quota_reset_at=now + timedelta(days=27),
        quota_used=monthly - 1,
    )
    sdk = await _sdk(client, api_server, user)
    question = [{"role": "user", "content": "hi [[tokens=1]]"}]
    sdk.messages.create(model=model, max_tokens=8, messages=question)
    with pytest.raises(anthropic.APIStatusError) as spent:
        with sdk.messages.stream(model=model, max_tokens=8, messages=question) as stream:
            stream.get_final_message()
    assert spent.value.status_code == 402
    assert spent.value.body["type"] == "error"
    assert spent.value.body["error"]["type"] == "billing_error"
    assert "retry-after" in spent.value.response.headers
    _finished(user.id, 1)


async def test_a_disconnected_stream_is_billed(client, make_user) -> None:
    user = make_user(plan="max")
    key = await _api_key(client, user)
    body = {
        "model": CLAUDE,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "long [[tag=cut tokens=30 delay=0.05]]"}],
    }
    async with client.stream("POST", "/v1/messages", json=body, headers={"x-api-key": key}) as r:
        assert r.status_code == 200
        seen = 0
        async for line in r.aiter_lines():
            seen += line.startswith("data: ")
            if seen == 4:
                break
    (generation,) = _finished(user.id, 1)
    with worker_session() as session:
        record = session.scalar(select(UsageRecord).where(UsageRecord.user_id == user.id))
    assert generation.status == "done" and record.completion_tokens == 30
    assert record.generation_id == generation.id and record.api_key_id is not None


async def test_a_claude_code_request_is_served(client, api_server, make_user, fake_llm) -> None:
    """Claude Code's own request shape (seen from Claude Code 2.x): a `system` message
    between the turns, `output_config.effort`, adaptive thinking and beta fields we do
    not carry, streamed."""
    user = make_user()
    key = await _api_key(client, user)
    prompt = "Say hello [[tag=claude-code tokens=4]]"
    body = {
        "model": "deepseek-flash",
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>today</system-reminder>"},
                    {"type": "text", "text": prompt, "cache_control": {"type": "ephemeral"}},
                ],
            },
            {"role": "system", "content": "Available agent types: claude"},
        ],
        "tools": [{"name": "Bash", "description": "Run", "input_schema": {"type": "object"}}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "max"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": '{"session_id": "s1"}'},
    }
    async with client.stream(
        "POST", "/v1/messages", json=body, headers={"x-api-key": key}, timeout=30
    ) as answer:
        assert answer.status_code == 200, await answer.aread()
        events = [
            orjson.loads(line[6:])
            async for line in answer.aiter_lines()
            if line.startswith("data: ")
        ]
    text = "".join(
        e["delta"]["text"]
        for e in events
        if e["type"] == "content_block_delta" and "text" in e["delta"]
    )
    assert events[-1]["type"] == "message_stop"
    [request] = fake_llm.requests_tagged("claude-code")
    sent = request["body"]
    assert text == expected_reply(prompt)
    assert {"role": "system", "content": "Available agent types: claude"} in sent["messages"]
    assert sent["reasoning_effort"] == "high"
