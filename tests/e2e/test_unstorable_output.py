"""Provider output PostgreSQL cannot store, through the API, the worker and the fake
upstream: a NUL in the reply is dropped (relayed and stored alike), and a reply that
still cannot be stored ends the stream at once with `storage_failed`, never as a hang
or `worker_lost`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from core.celery_app import celery_app
from core.db import worker_session
from core.redis import sync_redis
from core.streams import decode, stream_key
from models import Generation
from tests.fakes.openai_protocol import expected_reply
from tests.sse import new_conversation, stream_chat, text_of

pytestmark = pytest.mark.usefixtures("celery_worker")

# Past PostgreSQL's `integer`: a provider's claim no token column can hold.
UNSTORABLE_COUNT = 2**31 + 7
# The end comes at once; this only keeps a hang from stalling the run.
PROMPT_SECONDS = 10


def _only_generation(user) -> Generation:
    with worker_session() as session:
        return session.scalars(select(Generation).where(Generation.user_id == user.id)).one()


async def _conversation_detail(client, user, conversation_id: str) -> dict:
    answer = await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)
    return answer.json()


async def test_nul_in_a_streamed_reply_is_dropped_and_the_reply_kept(client, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    content = "[[tag=nul-chat tokens=6 nul=2]]"

    events = await asyncio.wait_for(
        stream_chat(client, user, conversation_id, content), PROMPT_SECONDS
    )

    assert events[-1].event == "done", events[-1]
    assert text_of(events) == expected_reply(content)
    assert events[-1].data["message"]["content"] == expected_reply(content)
    detail = await _conversation_detail(client, user, conversation_id)
    assert [(m["role"], m["content"], m["status"]) for m in detail["messages"]] == [
        ("user", content, "complete"),
        ("assistant", expected_reply(content), "complete"),
    ]
    generation = _only_generation(user)
    assert str(generation.id) == events[0].data["generation_id"]
    assert generation.status == "done"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_nul_in_a_completion_is_dropped(client, make_user, stream):
    user = make_user()
    content = f"[[tag=nul-completion-{stream} tokens=5 nul=0]]"
    body = {
        "model": "deepseek-chat",
        "stream": stream,
        "messages": [{"role": "user", "content": content}],
    }

    answer = await asyncio.wait_for(
        client.post("/v1/chat/completions", json=body, headers=user.headers), PROMPT_SECONDS
    )

    assert answer.status_code == 200, answer.text
    if stream:
        chunks = [
            json.loads(line[6:])
            for line in answer.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
        assert not [c for c in chunks if "error" in c]
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
    else:
        text = answer.json()["choices"][0]["message"]["content"]
    assert text == expected_reply(content)
    assert _only_generation(user).status == "done"


async def test_unstorable_usage_ends_the_stream_with_storage_failed(client, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    content = f"[[tag=huge-usage tokens=4 prompt_tokens={UNSTORABLE_COUNT}]]"

    events = await asyncio.wait_for(
        stream_chat(client, user, conversation_id, content), PROMPT_SECONDS
    )

    assert text_of(events) == expected_reply(content)
    assert events[-1].event == "error"
    assert events[-1].data["code"] == "storage_failed"
    generation = _only_generation(user)
    assert (generation.status, generation.error_code) == ("failed", "storage_failed")
    assert generation.finished_at is not None
    detail = await _conversation_detail(client, user, conversation_id)
    # The user's turn stays; the reply that could not be stored is not half-kept.
    assert [(m["role"], m["content"]) for m in detail["messages"]] == [("user", content)]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_unstorable_usage_fails_a_completion_promptly(client, make_user, stream):
    user = make_user()
    content = f"[[tag=huge-completion-{stream} tokens=3 prompt_tokens={UNSTORABLE_COUNT}]]"
    body = {
        "model": "deepseek-chat",
        "stream": stream,
        "messages": [{"role": "user", "content": content}],
    }

    answer = await asyncio.wait_for(
        client.post("/v1/chat/completions", json=body, headers=user.headers), PROMPT_SECONDS
    )

    if stream:
        assert answer.status_code == 200
        chunks = [
            json.loads(line[6:])
            for line in answer.text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]
        assert chunks[-1]["error"]["code"] == "storage_failed"
    else:
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "storage_failed"
    generation = _only_generation(user)
    assert (generation.status, generation.error_code) == ("failed", "storage_failed")


async def test_nul_in_the_partial_of_a_failed_reply_is_dropped_and_the_partial_kept(
    client, make_user
):
    """The partial is stored inside the failure's own handling, where a refused write
    used to escape the task and leave the client to the relay's `worker_lost`."""
    user = make_user()
    conversation_id = await new_conversation(client, user)
    content = "[[tag=nul-partial tokens=8 nul=1 fail_after=3]]"

    events = await asyncio.wait_for(
        stream_chat(client, user, conversation_id, content), PROMPT_SECONDS
    )

    assert events[-1].event == "error"
    assert events[-1].data["code"] == "upstream_error"
    streamed = text_of(events)
    assert streamed == expected_reply(content)[: len(streamed)] and streamed.count(" ") == 3
    detail = await _conversation_detail(client, user, conversation_id)
    assert [(m["role"], m["content"], m["status"]) for m in detail["messages"]] == [
        ("user", content, "complete"),
        ("assistant", streamed, "failed"),
    ]


def _terminal_events(generation_id: str, timeout: float) -> list[tuple[str, dict]]:
    """The generation's stream as the worker writes it, until its terminal event."""
    redis, key, last_id = sync_redis(), stream_key(generation_id), "0-0"
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, entries in redis.xread({key: last_id}, block=500) or []:
            for entry_id, fields in entries:
                last_id = entry_id
                events.append(decode(fields))
                if events[-1][0] in ("done", "error", "cancelled"):
                    return events
    raise AssertionError(f"no terminal event in {timeout} s: {events}")


@pytest.mark.parametrize(
    "knobs", ["tokens=3", "status=400"], ids=["refused-at-first-token", "refused-at-end"]
)
async def test_a_completion_whose_request_is_refused_ends_with_storage_failed(make_user, knobs):
    """The API's edge refuses a NUL before any worker sees it; a task that carries one
    anyway (sent straight to the broker here) still ends its stream with what happened."""
    user = make_user()
    generation_id = str(uuid.uuid4())
    content = f"[[tag=refused-request {knobs}]] a NUL: \x00."
    spec = {
        "user_id": str(user.id),
        "api_key_id": None,
        "kind": "completion",
        "provider": "deepseek",
        "model": "deepseek-chat",
        "request": {"messages": [{"role": "user", "content": content}]},
        "queued_at": datetime.now(UTC).isoformat(),
    }

    celery_app.send_task("workers.chat.generate", args=(generation_id, spec))
    events = await asyncio.to_thread(_terminal_events, generation_id, PROMPT_SECONDS)

    assert events[-1] == (
        "error",
        {"code": "storage_failed", "message": "The database refused to store this generation."},
    )
    deltas = "".join(data["content"] for event, data in events if event == "delta")
    if knobs == "tokens=3":
        # Refused at the first token, which the client already has.
        assert deltas and expected_reply(content).startswith(deltas)
    else:
        assert deltas == ""
    with worker_session() as session:
        assert session.scalar(select(Generation).where(Generation.user_id == user.id)) is None
