"""WebSocket chat and cancel, and conversation titles."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import websockets

from core.chat import trim_history
from tests.fakes.openai_protocol import expected_reply
from tests.sse import new_conversation, stream_chat

pytestmark = pytest.mark.usefixtures("celery_worker")


def _ws_url(api_server: str, conversation_id: str, token: str) -> str:
    return (
        api_server.replace("http", "ws") + f"/v1/conversations/{conversation_id}/ws?token={token}"
    )


async def _receive_until_end(socket) -> list[dict]:
    received = []
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), 30))
        received.append(message)
        if message["type"] in ("done", "error", "cancelled"):
            return received


async def test_websocket_streams_then_cancels(client, api_server, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    async with websockets.connect(_ws_url(api_server, conversation_id, user.access_token)) as ws:
        content = "[[tag=ws tokens=15]]"
        await ws.send(json.dumps({"type": "chat", "content": content}))
        events = await _receive_until_end(ws)
        assert events[0]["type"] == "start" and events[-1]["type"] == "done"
        text = "".join(e["content"] for e in events if e["type"] == "delta")
        assert text == expected_reply(content) == events[-1]["message"]["content"]

        await ws.send(json.dumps({"type": "chat", "content": "[[tag=ws2 tokens=500 delay=0.02]]"}))
        first = [json.loads(await ws.recv()) for _ in range(3)]
        await ws.send(json.dumps({"type": "cancel"}))
        rest = await _receive_until_end(ws)
        assert rest[-1]["type"] == "cancelled"
        partial = "".join(e["content"] for e in first + rest if e["type"] == "delta")
        assert rest[-1]["message"]["content"] == partial
        assert len(partial) < len(expected_reply("[[tag=ws2 tokens=500]]"))


async def test_websocket_refuses_bad_token_and_other_users_conversation(
    client, api_server, make_user
):
    owner, other = make_user(), make_user()
    conversation_id = await new_conversation(client, owner)
    for token, code in (("not-a-token", 4401), (other.access_token, 4404)):
        async with websockets.connect(_ws_url(api_server, conversation_id, token)) as ws:
            message = json.loads(await ws.recv())
            assert message["type"] == "error"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == code


async def _title_of(client, user, conversation_id: str, want_set: bool = True) -> str | None:
    for _ in range(100):
        title = (
            await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)
        ).json()["title"]
        if title or not want_set:
            return title
        await asyncio.sleep(0.1)
    return None


async def test_title_falls_back_to_first_message_when_provider_fails(client, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    content = "Plan a week in Kyoto with temples and food [[tag=tfail title_status=500]]"
    events = await stream_chat(client, user, conversation_id, content)
    assert events[-1].event == "done"
    title = await _title_of(client, user, conversation_id)
    assert title is not None and title.startswith("Plan a week in Kyoto")
    assert len(title) <= 60


async def test_user_set_title_is_kept(client, make_user, fake_llm):
    user = make_user()
    conversation_id = await new_conversation(client, user, title="My own title")
    await stream_chat(client, user, conversation_id, "[[tag=tkeep tokens=3]]")
    renamed = await new_conversation(client, user)
    assert (
        await client.patch(
            f"/v1/conversations/{renamed}", json={"title": "Renamed"}, headers=user.headers
        )
    ).status_code == 200
    await stream_chat(client, user, renamed, "[[tag=tkeep2 tokens=3]]")
    # A control conversation queued after both: once its title job has run (it needs a
    # provider call, theirs only a lookup), the title jobs of the two above have too.
    control = await new_conversation(client, user)
    await stream_chat(client, user, control, "[[tag=tkeep3 tokens=3]]")
    assert await _title_of(client, user, control) is not None
    assert await _title_of(client, user, conversation_id, False) == "My own title"
    assert await _title_of(client, user, renamed, False) == "Renamed"
    asked_for_titles = {
        tag
        for tag in ("tkeep", "tkeep2", "tkeep3")
        if any(r["is_title"] for r in fake_llm.requests_tagged(tag))
    }
    assert asked_for_titles == {"tkeep3"}


def test_history_trimmed_to_context_window_keeps_system_and_newest():
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "x" * 400} for i in range(40)
    ]
    trimmed = trim_history("Be kind.", history, window=1000, reserve_for_output=200)
    assert trimmed[0] == {"role": "system", "content": "Be kind."}
    kept = trimmed[1:]
    assert kept == history[-len(kept) :]
    assert 1 <= len(kept) < len(history)
    assert sum(len(m["content"]) // 4 + 4 for m in kept) <= 800
    # The newest message is kept even when it alone is larger than the window.
    huge = [{"role": "user", "content": "y" * 100_000}]
    assert trim_history(None, huge, window=1000) == huge


def _title_jobs_received(worker) -> int:
    return len(re.findall(r"workers\.titles\.generate\[[^\]]+\] received", worker.log_text()))


async def test_title_job_queued_only_while_untitled(client, make_user, celery_worker):
    """Every reply used to queue a title job that mostly found a title and stopped; now
    only a reply in a conversation without one does."""
    user = make_user()
    titled = await new_conversation(client, user)
    await stream_chat(client, user, titled, "Name this one [[tag=tonce1 tokens=3]]")
    assert await _title_of(client, user, titled) is not None
    before = _title_jobs_received(celery_worker)
    await stream_chat(client, user, titled, "[[tag=tonce2 tokens=3]]")
    # A control conversation after it: its title job is queued after any of the above.
    control = await new_conversation(client, user)
    await stream_chat(client, user, control, "[[tag=tonce3 tokens=3]]")
    assert await _title_of(client, user, control) is not None
    assert _title_jobs_received(celery_worker) - before == 1
