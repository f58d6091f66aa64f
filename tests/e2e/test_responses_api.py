"""The official `openai` SDK's `responses` against the running stack (API, worker, fake
upstream): create, stream, function calls continued with `previous_response_id`,
retrieve, `store: false`, reasoning items, on a Claude-routed and an OpenAI-compatible-
routed model; quota counted once per request and refused in OpenAI's shape."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest
from sqlalchemy import func, select

from core.db import worker_session
from models import Generation, UsageRecord
from tests.fakes.llm import FakeLLM, expected_tool_calls
from tests.fakes.openai_protocol import expected_reasoning, expected_reply

pytestmark = pytest.mark.usefixtures("celery_worker")

# (plan, model): a Claude-routed model and an OpenAI-compatible-routed one.
MODELS = [("max", "claude-sonnet-5-5"), ("free", "deepseek-flash")]
WEATHER = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


async def _sdk(client: httpx.AsyncClient, api_server: str, user, **key) -> openai.OpenAI:
    answer = await client.post(
        "/v1/developer/api-keys", json={"name": "responses", **key}, headers=user.headers
    )
    assert answer.status_code == 201, answer.text
    return openai.OpenAI(base_url=api_server + "/v1", api_key=answer.json()["key"], max_retries=0)


async def _quota_used(client: httpx.AsyncClient, user) -> int:
    answer = await client.get("/v1/developer/usage/current", headers=user.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["quota_used"]


def _wait_until_finished(user_id, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with worker_session() as session:
            running = session.scalar(
                select(func.count(Generation.id)).where(
                    Generation.user_id == user_id, Generation.status.in_(("queued", "running"))
                )
            )
        if running == 0:
            return
        time.sleep(0.1)
    raise AssertionError("generations did not finish")


@pytest.mark.parametrize(("plan", "model"), MODELS)
async def test_create_stream_and_retrieve(client, api_server, make_user, plan, model) -> None:
    user = make_user(plan=plan)
    sdk = await _sdk(client, api_server, user)
    prompt = f"hello [[tag=resp-{plan} tokens=5]]"

    created = sdk.responses.create(model=model, input=prompt, instructions="be brief")
    assert created.id.startswith("resp_") and created.object == "response"
    assert created.status == "completed" and created.model == model
    assert created.output_text == expected_reply(prompt)
    assert [item.type for item in created.output] == ["message"]
    assert created.usage.output_tokens == 5 and created.usage.input_tokens > 0
    assert created.usage.total_tokens == created.usage.input_tokens + 5
    assert sdk.responses.retrieve(created.id).output_text == expected_reply(prompt)

    stream_prompt = f"stream [[tag=resps-{plan} tokens=7 delay=0.02]]"
    with sdk.responses.stream(
        model=model, input=[{"role": "user", "content": stream_prompt}]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    for wanted in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.output_item.done",
    ):
        assert wanted in types
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == expected_reply(stream_prompt) == final.output_text
    assert final.usage.output_tokens == 7
    kept = sdk.responses.retrieve(final.id)
    assert kept.status == "completed" and kept.output_text == expected_reply(stream_prompt)

    # Continued: the earlier turn is sent again, its instructions not.
    follow = f"and then? [[tag=respf-{plan} tokens=2]]"
    second = sdk.responses.create(model=model, input=follow, previous_response_id=created.id)
    assert second.output_text == expected_reply(follow)
    assert second.previous_response_id == created.id


@pytest.mark.parametrize(("plan", "model"), MODELS)
async def test_function_calls_continued(
    client, api_server, make_user, fake_llm: FakeLLM, plan, model
) -> None:
    user = make_user(plan=plan)
    sdk = await _sdk(client, api_server, user)
    tag = f"respfn-{plan}"
    prompt = f"weather? [[tag={tag} tool=get_weather delay=0.03 tokens=3]]"
    wanted = expected_tool_calls(prompt)

    with sdk.responses.stream(model=model, input=prompt, tools=WEATHER) as stream:
        events = list(stream)
        first = stream.get_final_response()
    calls = [item for item in first.output if item.type == "function_call"]
    # Anthropic names its calls `toolu_...`, OpenAI-compatible providers `call_...`.
    assert [(c.call_id.split("_", 1)[1], c.name, c.arguments) for c in calls] == [
        (w["id"].split("_", 1)[1], w["function"]["name"], w["function"]["arguments"])
        for w in wanted
    ]
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert json.loads(arguments) == json.loads(wanted[0]["function"]["arguments"])
    sent = fake_llm.requests_tagged(tag)[0]["body"]
    assert [tool.get("name") or tool["function"]["name"] for tool in sent["tools"]] == [
        "get_weather"
    ]

    answer = sdk.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
        tools=WEATHER,
    )
    assert answer.output_text == expected_reply(prompt)
    follow_up = fake_llm.requests_tagged(tag)[-1]["body"]
    assert "sunny" in json.dumps(follow_up["messages"])
    assert calls[0].call_id in json.dumps(follow_up["messages"])


@pytest.mark.parametrize(("plan", "model"), MODELS)
async def test_reasoning_item(client, api_server, make_user, plan, model) -> None:
    user = make_user(plan=plan)
    sdk = await _sdk(client, api_server, user)
    prompt = f"think [[tag=respr-{plan} reasoning=4 tokens=3]]"

    answer = sdk.responses.create(model=model, input=prompt, reasoning={"effort": "minimal"})
    reasoning, message = answer.output
    assert reasoning.type == "reasoning" and message.type == "message"
    assert "".join(c.text for c in reasoning.content) == expected_reasoning(prompt)
    assert answer.output_text == expected_reply(prompt)

    with sdk.responses.stream(model=model, input=prompt) as stream:
        events = list(stream)
        final = stream.get_final_response()
    thought = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert thought == expected_reasoning(prompt)
    assert [item.type for item in final.output] == ["reasoning", "message"]


async def test_store_false_keeps_nothing_but_usage(client, api_server, make_user) -> None:
    user = make_user()
    sdk = await _sdk(client, api_server, user)
    prompt = "forget me [[tag=respnostore tokens=3]]"
    answer = sdk.responses.create(model="deepseek-flash", input=prompt, store=False)
    assert answer.output_text == expected_reply(prompt) and answer.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(answer.id)
    with pytest.raises(openai.BadRequestError):
        sdk.responses.create(model="deepseek-flash", input="more", previous_response_id=answer.id)
    _wait_until_finished(user.id)
    with worker_session() as session:
        rows = session.scalar(
            select(func.count(Generation.id)).where(Generation.user_id == user.id)
        )
        records = session.scalars(select(UsageRecord).where(UsageRecord.user_id == user.id)).all()
    assert rows == 0
    assert len(records) == 1 and records[0].completion_tokens == 3
    assert records[0].generation_id is None


async def test_another_users_response_is_not_found(client, api_server, make_user) -> None:
    owner, other = make_user(), make_user()
    mine = (await _sdk(client, api_server, owner)).responses.create(
        model="deepseek-flash", input="mine [[tokens=1]]"
    )
    theirs = await _sdk(client, api_server, other)
    with pytest.raises(openai.NotFoundError) as missing:
        theirs.responses.retrieve(mine.id)
    assert missing.value.body["type"] == "not_found_error"
    with pytest.raises(openai.BadRequestError):
        theirs.responses.create(model="deepseek-flash", input="x", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve("resp_nothing")


async def test_quota_counted_once_and_refused_in_openai_shape(
    client, api_server, make_user
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    user = make_user(
        quota_period_start_at=now - timedelta(days=3),
        quota_reset_at=now + timedelta(days=27),
        quota_used=9_996,
    )
    sdk = await _sdk(client, api_server, user)
    first = sdk.responses.create(model="deepseek-flash", input="one [[tokens=1]]")
    assert await _quota_used(client, user) == 9_997
    with sdk.responses.stream(model="deepseek-flash", input="two [[tokens=1]]") as stream:
        stream.get_final_response()
    assert await _quota_used(client, user) == 9_998
    sdk.responses.create(
        model="deepseek-flash", input="three [[tokens=1]]", previous_response_id=first.id
    )
    assert await _quota_used(client, user) == 9_999
    sdk.responses.create(model="deepseek-flash", input="four [[tokens=1]]")
    with pytest.raises(openai.APIStatusError) as spent:
        sdk.responses.create(model="deepseek-flash", input="five [[tokens=1]]")
    assert spent.value.status_code == 402 and spent.value.code == "quota_exceeded"
    assert spent.value.body["type"] == "insufficient_quota"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk.responses.create(model="claude-sonnet-5-5", input="hi")
    assert denied.value.code == "model_not_allowed"


async def test_disconnected_stream_is_kept_and_billed(client, api_server, make_user) -> None:
    user = make_user()
    sdk = await _sdk(client, api_server, user)
    prompt = "long [[tag=respcut tokens=20 delay=0.05]]"
    response_id = None
    async with client.stream(
        "POST",
        "/v1/responses",
        json={"model": "deepseek-flash", "input": prompt, "stream": True},
        headers={"Authorization": f"Bearer {sdk.api_key}"},
    ) as answer:
        assert answer.status_code == 200
        async for line in answer.aiter_lines():
            if line.startswith("data: ") and '"response.output_text.delta"' in line:
                break
            if line.startswith("data: ") and '"response.created"' in line:
                response_id = json.loads(line[6:])["response"]["id"]
    assert response_id is not None
    _wait_until_finished(user.id)
    deadline = time.monotonic() + 10
    while (kept := sdk.responses.retrieve(response_id)).status != "completed":
        assert time.monotonic() < deadline, kept.status
        time.sleep(0.1)
    assert kept.output_text == expected_reply(prompt) and kept.usage.output_tokens == 20
    with worker_session() as session:
        record = session.scalar(select(UsageRecord).where(UsageRecord.user_id == user.id))
    assert record.completion_tokens == 20
