"""Streaming chat through the API, the Celery worker and the fake upstream."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from core.db import worker_session
from models import Generation, Message
from tests.fakes.openai_protocol import expected_reasoning, expected_reply
from tests.sse import new_conversation, open_chat_stream, read_events, stream_chat, text_of
from workers.generation.request import build_call

pytestmark = pytest.mark.usefixtures("celery_worker")


async def test_stream_end_to_end_stores_reply_and_usage(client, make_user, fake_llm):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    content = "Hello there [[tag=e2e1 tokens=30 delay=0.01]]"

    events = await stream_chat(client, user, conversation_id, content)

    names = [e.event for e in events]
    assert names[0] == "start" and names[-1] == "done"
    assert set(names[1:-1]) == {"delta"}
    assert all(e.id for e in events)
    start, done = events[0].data, events[-1].data
    assert start["conversation_id"] == conversation_id
    assert text_of(events) == expected_reply(content)
    assert done["message"]["content"] == expected_reply(content)
    assert done["message"]["status"] == "complete"

    [request] = [r for r in fake_llm.requests_tagged("e2e1") if not r["is_title"]]
    assert request["headers"]["authorization"] == "Bearer sk-fake-deepseek"
    # The free plan's default, the current model the mobile clients' `deepseek-chat` names.
    assert request["body"]["model"] == "deepseek-flash"
    assert request["body"]["messages"][-1] == {"role": "user", "content": content}
    prompt_tokens = len(content) // 4 + 3
    assert done["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 30,
        "total_tokens": prompt_tokens + 30,
        # A model that did not think and a prompt not cached: none, or none reported.
        "reasoning_tokens": done["usage"]["reasoning_tokens"],
        "cached_tokens": done["usage"]["cached_tokens"],
        "estimated": False,
    }
    assert done["usage"]["reasoning_tokens"] in (None, 0)
    assert done["usage"]["cached_tokens"] in (None, 0)
    assert done["message"]["reasoning"] is None and done["message"]["attachments"] == []

    detail = (await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)).json()
    assert [(m["role"], m["content"], m["status"]) for m in detail["messages"]] == [
        ("user", content, "complete"),
        ("assistant", expected_reply(content), "complete"),
    ]
    assert detail["messages"][0]["id"] == start["user_message_id"]
    status = (
        await client.get(f"/v1/generations/{start['generation_id']}", headers=user.headers)
    ).json()
    assert status["status"] == "done"
    assert status["usage"]["completion_tokens"] == 30

    # The title job names the conversation from the first exchange, reasoning and quotes gone.
    for _ in range(100):
        listing = (await client.get("/v1/conversations", headers=user.headers)).json()
        if listing["items"][0]["title"]:
            break
        await asyncio.sleep(0.1)
    assert listing["items"][0]["title"] == "Talk about e2e1"


async def _replay(client, user, generation_id: str, last_event_id: str | None = None):
    headers = dict(user.headers)
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with client.stream(
        "GET", f"/v1/generations/{generation_id}/stream", headers=headers
    ) as response:
        assert response.status_code == 200
        return await read_events(response)


async def test_late_attach_replays_everything_and_resume_gets_exactly_the_rest(client, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    content = "[[tag=late tokens=40]]"
    live = await stream_chat(client, user, conversation_id, content)
    generation_id = live[0].data["generation_id"]

    replayed = await _replay(client, user, generation_id)
    assert [(e.id, e.event, e.data) for e in replayed] == [(e.id, e.event, e.data) for e in live]

    middle = len(live) // 2
    rest = await _replay(client, user, generation_id, live[middle].id)
    assert [e.id for e in rest] == [e.id for e in live[middle + 1 :]]
    assert text_of(live[: middle + 1]) + text_of(rest) == expected_reply(content)


async def test_fifty_concurrent_streams_from_fifty_users(client, make_user):
    users = [make_user() for _ in range(50)]
    conversations = [await new_conversation(client, user) for user in users]

    async def one(index: int):
        content = f"[[tag=u{index} tokens={10 + index % 7} delay=0.02]]"
        return content, await stream_chat(client, users[index], conversations[index], content)

    results = await asyncio.gather(*(one(i) for i in range(50)))
    for index, (content, events) in enumerate(results):
        assert events[-1].event == "done", (index, events[-1])
        assert text_of(events) == expected_reply(content)
        assert events[-1].data["message"]["content"] == expected_reply(content)
        assert events[0].data["conversation_id"] == conversations[index]


async def test_cancel_mid_stream_keeps_partial_reply(client, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    newer_id = await new_conversation(client, user)
    content = "[[tag=cancel tokens=400 delay=0.02]]"
    async with open_chat_stream(client, user, conversation_id, content) as response:
        lines = response.aiter_lines()
        head = await read_events(lines, stop_after=3)
        generation_id = head[0].data["generation_id"]
        # Before any reply is stored, the user's message is, and it moved its conversation
        # ahead of the newer one (newest activity first).
        listing = (await client.get("/v1/conversations", headers=user.headers)).json()
        assert [c["id"] for c in listing["items"]] == [conversation_id, newer_id]
        detail = await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)
        assert [(m["id"], m["content"]) for m in detail.json()["messages"]] == [
            (head[0].data["user_message_id"], content)
        ]
        answer = await client.post(f"/v1/generations/{generation_id}/cancel", headers=user.headers)
        assert answer.status_code == 202
        tail = await read_events(lines)
    events = head + tail
    assert events[-1].event == "cancelled"
    streamed = text_of(events)
    assert 0 < len(streamed) < len(expected_reply(content))
    assert expected_reply(content).startswith(streamed)
    message = events[-1].data["message"]
    assert message["status"] == "cancelled" and message["content"] == streamed
    status = (await client.get(f"/v1/generations/{generation_id}", headers=user.headers)).json()
    assert status["status"] == "cancelled"


async def test_provider_error_mid_stream_keeps_user_message_and_partial(client, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    content = "[[tag=broken tokens=50 fail_after=5 delay=0.01]]"
    events = await stream_chat(client, user, conversation_id, content)
    assert events[-1].event == "error"
    assert events[-1].data["code"] == "upstream_error"
    assert text_of(events) == expected_reply(content)[: len("w0-broken ") * 5]
    detail = (await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)).json()
    assert [(m["role"], m["status"]) for m in detail["messages"]] == [
        ("user", "complete"),
        ("assistant", "failed"),
    ]
    assert detail["messages"][1]["content"] == text_of(events)


async def test_http_error_before_first_token_is_upstream_error_with_provider_message(
    client, make_user
):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    answer = await client.post(
        f"/v1/conversations/{conversation_id}/chat",
        json={"content": "[[tag=refused status=400]]"},
        headers=user.headers,
    )
    assert answer.status_code == 502
    assert answer.json()["code"] == "upstream_error"
    assert "fake upstream refuses" in answer.json()["detail"]


async def test_non_streaming_chat_and_redelivery_never_calls_provider_twice(
    client, make_user, fake_llm, celery_worker
):
    from core.celery_app import celery_app

    user = make_user()
    conversation_id = await new_conversation(client, user)
    content = "[[tag=once tokens=8]]"
    answer = await client.post(
        f"/v1/conversations/{conversation_id}/chat", json={"content": content}, headers=user.headers
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["message"]["content"] == expected_reply(content)
    assert body["usage"]["completion_tokens"] == 8

    task_id = f"redeliver-{body['generation_id']}"
    celery_app.send_task("workers.chat.generate", args=(body["generation_id"],), task_id=task_id)
    for _ in range(100):
        if f"{task_id}] succeeded" in celery_worker.log_text():
            break
        await asyncio.sleep(0.1)
    assert f"{task_id}] succeeded" in celery_worker.log_text()
    assert len([r for r in fake_llm.requests_tagged("once") if not r["is_title"]]) == 1
    detail = (await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)).json()
    assert len([m for m in detail["messages"] if m["role"] == "assistant"]) == 1


async def test_silent_stream_gets_keep_alive_comments(service_env, make_user, fake_llm):
    """While the provider thinks, SSE comments keep proxies from closing the stream."""
    from tests.conftest import start_api

    api, base_url = start_api({**service_env, "SSE_PING_SECONDS": "1"})
    try:
        user = make_user()
        content = "[[tag=ping first_delay=5 tokens=3]]"
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            conversation_id = await new_conversation(client, user)
            lines: list[str] = []
            async with open_chat_stream(client, user, conversation_id, content) as response:
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line.startswith("event: done"):
                        break
        first_delta = lines.index("event: delta")
        assert lines[:first_delta].count(": ping") >= 2, lines[:first_delta]
        assert "".join(
            json.loads(line[6:])["content"]
            for previous, line in zip(lines, lines[1:], strict=False)
            if previous == "event: delta"
        ) == expected_reply(content)
    finally:
        api.stop()


async def test_completion_redelivery_never_calls_provider_twice(
    client, make_user, fake_llm, celery_worker
):
    """A stateless completion is claimed in Redis, not PostgreSQL: a second delivery of
    its task (as the broker makes after a lost acknowledgement) must stop at the claim."""
    from datetime import UTC, datetime

    from core.celery_app import celery_app

    user = make_user()
    content = "[[tag=once-completion tokens=6]]"
    answer = await client.post(
        "/v1/chat/completions",
        json={"model": "deepseek-chat", "messages": [{"role": "user", "content": content}]},
        headers=user.headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == expected_reply(content)
    generation_id = str(uuid.UUID(answer.json()["id"].removeprefix("chatcmpl-")))

    spec = {
        "user_id": str(user.id),
        "api_key_id": None,
        "kind": "completion",
        "provider": "deepseek",
        "model": "deepseek-chat",
        "request": {"messages": [{"role": "user", "content": content}]},
        "queued_at": datetime.now(UTC).isoformat(),
    }
    task_id = f"redeliver-{generation_id}"
    celery_app.send_task("workers.chat.generate", args=(generation_id, spec), task_id=task_id)
    celery_worker.wait_for(lambda: f"[{task_id}] succeeded" in celery_worker.log_text(), 10)
    assert len(fake_llm.requests_tagged("once-completion")) == 1
    status = await client.get(f"/v1/generations/{generation_id}", headers=user.headers)
    assert status.json()["status"] == "done"
    history = await client.get("/v1/developer/usage/current", headers=user.headers)
    assert history.json()["quota_used"] == 1


async def test_completion_of_a_deleted_user_failing_before_its_first_token(celery_worker):
    """A completion whose user was deleted while it waited, and whose provider fails before
    any token: its row cannot be stored, so its stream ends with `not_found`, and the
    task ends cleanly instead of raising out of its failure handler."""
    from datetime import UTC, datetime

    from core.celery_app import celery_app
    from core.redis import sync_redis
    from core.streams import decode, stream_key

    generation_id = str(uuid.uuid4())
    spec = {
        "user_id": str(uuid.uuid4()),
        "api_key_id": None,
        "kind": "completion",
        "provider": "deepseek",
        "model": "deepseek-chat",
        "request": {"messages": [{"role": "user", "content": "x [[tag=gone status=400]]"}]},
        "queued_at": datetime.now(UTC).isoformat(),
    }
    task_id = f"gone-{generation_id}"
    celery_app.send_task("workers.chat.generate", args=(generation_id, spec), task_id=task_id)
    celery_worker.wait_for(lambda: f"[{task_id}] succeeded" in celery_worker.log_text(), 20)
    events = [decode(fields) for _, fields in sync_redis().xrange(stream_key(generation_id))]
    assert [(event, data["code"]) for event, data in events] == [("error", "not_found")]


async def test_turn_whose_request_cannot_be_built_ends_failed(make_user, fake_llm, celery_worker):
    """A queued turn whose model config was deleted before a worker took it: the request is
    built inside the claim's transaction, yet the claim stands, so the failure is stored
    with its reason and the stream gets its `error` event; no provider is called."""
    from datetime import UTC, datetime

    from core.celery_app import celery_app
    from core.db import worker_session
    from core.redis import sync_redis
    from core.streams import decode, stream_key
    from models import Conversation, Generation, Message

    user = make_user()
    generation_id = uuid.uuid4()
    with worker_session() as session:
        conversation = Conversation(user_id=user.id)
        session.add(conversation)
        session.flush()
        message = Message(conversation_id=conversation.id, role="user", content="[[tag=nobuild]]")
        session.add(message)
        session.flush()
        session.add(
            Generation(
                id=generation_id,
                conversation_id=conversation.id,
                user_id=user.id,
                user_message_id=message.id,
                provider="custom",
                model="gone-model",
                model_config_id=None,
                queued_at=datetime.now(UTC),
            )
        )
    task_id = f"nobuild-{generation_id}"
    celery_app.send_task("workers.chat.generate", args=(str(generation_id),), task_id=task_id)
    celery_worker.wait_for(lambda: f"[{task_id}] succeeded" in celery_worker.log_text(), 20)

    events = [decode(fields) for _, fields in sync_redis().xrange(stream_key(str(generation_id)))]
    assert events == [
        ("error", {"code": "upstream_error", "message": "The model config was deleted."})
    ]
    with worker_session() as session:
        stored = session.get(Generation, generation_id)
        assert (stored.status, stored.error_code) == ("failed", "upstream_error")
        assert stored.attempts == 1 and stored.started_at is not None
    assert fake_llm.requests_tagged("nobuild") == []


@pytest.mark.parametrize(
    ("plan", "protocol", "model", "key_header", "key"),
    [
        ("free", "openai", "deepseek-flash", "authorization", "Bearer sk-fake-deepseek"),
        ("pro", "openai", "kimi-k2.6", "authorization", "Bearer sk-fake-kimi"),
        ("max", "anthropic", "claude-sonnet-5-5", "x-api-key", "sk-ant-fake"),
    ],
)
async def test_plan_routes_to_its_provider(
    client, make_user, fake_llm, plan, protocol, model, key_header, key
):
    user = make_user(plan=plan)
    conversation_id = await new_conversation(client, user, system_prompt="Be brief.")
    content = f"[[tag=plan-{plan} tokens=9]]"
    events = await stream_chat(client, user, conversation_id, content)
    assert events[-1].event == "done"
    assert text_of(events) == expected_reply(content)
    [request] = [r for r in fake_llm.requests_tagged(f"plan-{plan}") if not r["is_title"]]
    assert request["protocol"] == protocol
    assert request["body"]["model"] == model
    assert request["headers"][key_header] == key
    if protocol == "anthropic":
        assert request["body"]["system"] == "Be brief."
        assert request["body"]["messages"] == [{"role": "user", "content": content}]
    assert events[-1].data["usage"]["completion_tokens"] == 9
    assert events[-1].data["usage"]["estimated"] is False


async def test_model_outside_plan_is_refused(client, make_user):
    user = make_user(plan="free")
    conversation_id = await new_conversation(client, user)
    answer = await client.post(
        f"/v1/conversations/{conversation_id}/chat/stream",
        json={"content": "hi", "model": "claude-3-5-sonnet-latest"},
        headers=user.headers,
    )
    assert answer.status_code == 403
    assert answer.json()["code"] == "model_not_allowed"
    answer = await client.post(
        "/v1/conversations", json={"model": "moonshot-v1-32k"}, headers=user.headers
    )
    assert answer.json()["code"] == "model_not_allowed"
    # A higher plan includes the lower plans' models.
    pro = make_user(plan="pro")
    assert (
        await client.post("/v1/conversations", json={"model": "deepseek-chat"}, headers=pro.headers)
    ).status_code == 201


async def test_another_users_conversation_and_generation_are_not_found(client, make_user):
    owner, other = make_user(), make_user()
    conversation_id = await new_conversation(client, owner)
    events = await stream_chat(client, owner, conversation_id, "[[tag=mine tokens=3]]")
    generation_id = events[0].data["generation_id"]
    for method, path in [
        ("GET", f"/v1/conversations/{conversation_id}"),
        ("PATCH", f"/v1/conversations/{conversation_id}"),
        ("DELETE", f"/v1/conversations/{conversation_id}"),
        ("POST", f"/v1/conversations/{conversation_id}/chat/stream"),
        ("GET", f"/v1/generations/{generation_id}"),
        ("GET", f"/v1/generations/{generation_id}/stream"),
        ("POST", f"/v1/generations/{generation_id}/cancel"),
    ]:
        body = {"title": "x"} if method == "PATCH" else {"content": "hi"}
        answer = await client.request(
            method, path, json=body if method in ("PATCH", "POST") else None, headers=other.headers
        )
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["code"] == "not_found"
    assert (await client.get("/v1/conversations", headers=other.headers)).json()["total"] == 0


def _reasoning_of(events) -> str:
    return "".join(e.data["content"] for e in events if e.event == "reasoning")


async def test_a_thinking_models_reasoning_streams_first_and_is_stored(client, make_user, fake_llm):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    content = "Think first [[tag=think reasoning=20 tokens=8 delay=0.005 cached=5]]"

    events = await stream_chat(client, user, conversation_id, content)

    names = [e.event for e in events]
    assert names[0] == "start" and names[-1] == "done"
    assert set(names[1:-1]) == {"reasoning", "delta"}
    last_reasoning = max(i for i, name in enumerate(names) if name == "reasoning")
    assert last_reasoning < names.index("delta")
    assert _reasoning_of(events) == expected_reasoning(content)
    assert text_of(events) == expected_reply(content)
    done = events[-1].data
    assert done["message"]["reasoning"] == expected_reasoning(content)
    assert done["message"]["content"] == expected_reply(content)
    assert done["usage"]["reasoning_tokens"] == 20
    assert done["usage"]["cached_tokens"] == 5
    assert done["message"]["reasoning_tokens"] == 20

    detail = (await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)).json()
    reply = detail["messages"][-1]
    assert (reply["reasoning"], reply["reasoning_tokens"], reply["cached_tokens"]) == (
        expected_reasoning(content),
        20,
        5,
    )
    assert reply["attachments"] == [] and detail["messages"][0]["reasoning"] is None
    generation_id = events[0].data["generation_id"]
    status = (await client.get(f"/v1/generations/{generation_id}", headers=user.headers)).json()
    assert (status["usage"]["reasoning_tokens"], status["usage"]["cached_tokens"]) == (20, 5)

    # Resumed from an id taken mid-reasoning: exactly the rest, reasoning and reply.
    reasoning_events = [i for i, name in enumerate(names) if name == "reasoning"]
    middle = reasoning_events[len(reasoning_events) // 2]
    rest = await _replay(client, user, generation_id, events[middle].id)
    assert [e.id for e in rest] == [e.id for e in events[middle + 1 :]]
    assert _reasoning_of(events[: middle + 1]) + _reasoning_of(rest) == expected_reasoning(content)
    assert text_of(rest) == expected_reply(content)

    # A later turn sends the conversation's text back, never its reasoning.
    second = "And then? [[tag=think2 tokens=3]]"
    await stream_chat(client, user, conversation_id, second)
    [request] = [r for r in fake_llm.requests_tagged("think2") if not r["is_title"]]
    sent = request["body"]["messages"]
    assert sent[-2] == {"role": "assistant", "content": expected_reply(content)}


async def test_reasoning_effort_from_the_chat_body_or_the_ai_config_reaches_the_call(
    client, make_user
):
    """What the worker builds for the provider (ProviderCall.reasoning_effort); how each
    adapter maps it onto its provider's request is the adapters' to test."""
    user = make_user()
    conversation_id = await new_conversation(client, user)
    own = await stream_chat(
        client, user, conversation_id, "[[tag=effort1 tokens=2]]", reasoning_effort="low"
    )
    refused = await client.post(
        f"/v1/conversations/{conversation_id}/chat",
        headers=user.headers,
        json={"content": "hi", "reasoning_effort": "extreme"},
    )
    assert refused.status_code == 422
    config = await client.put(
        "/v1/user/ai-config", headers=user.headers, json={"reasoning_effort": "high"}
    )
    assert config.status_code == 200
    default = await stream_chat(client, user, conversation_id, "[[tag=effort2 tokens=2]]")
    overridden = await stream_chat(
        client, user, conversation_id, "[[tag=effort3 tokens=2]]", reasoning_effort="none"
    )
    efforts = []
    with worker_session() as session:
        for events in (own, default, overridden):
            generation = session.get(Generation, uuid.UUID(events[0].data["generation_id"]))
            assert generation is not None
            efforts.append(build_call(session, generation).reasoning_effort)
    assert efforts == ["low", "high", "none"]


async def test_a_reply_without_reasoning_stores_none(client, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    events = await stream_chat(client, user, conversation_id, "[[tag=plain tokens=3]]")
    with worker_session() as session:
        message = session.get(Message, events[-1].data["message"]["id"])
        assert message is not None
        assert (message.reasoning, message.provider_blocks) == (None, None)
