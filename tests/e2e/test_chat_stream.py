"""Streaming chat through the API, the Celery worker and the fake upstream."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.llm import expected_reply
from tests.sse import new_conversation, stream_chat, text_of

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
    assert request["body"]["model"] == "deepseek-chat"
    assert request["body"]["messages"][-1] == {"role": "user", "content": content}
    prompt_tokens = len(content) // 4 + 3
    assert done["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 30,
        "total_tokens": prompt_tokens + 30,
        "estimated": False,
    }

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
