"""Resuming a generation's stream with a hostile or spent `Last-Event-ID`, and the one
stream reader of an API process (api/streaming/hub.py) surviving a reader that fails."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core.redis import sync_redis
from core.streams import stream_key
from tests.fakes.openai_protocol import expected_reply
from tests.sse import new_conversation, open_chat_stream, read_events, stream_chat, text_of

pytestmark = pytest.mark.usefixtures("celery_worker")

# Every bound here is far above what the behaviour needs: only a hang should reach one.
GENEROUS_SECONDS = 30
STREAM_ID_MAX = 2**64 - 1

HOSTILE_CURSORS = [
    # Redis answers each of these with "Invalid stream ID".
    "0-99999999999999999999999",
    "99999999999999999999999",
    f"{STREAM_ID_MAX + 1}-0",
    f"0-{STREAM_ID_MAX + 1}",
    "abc",
    "1-2-3",
    "-1",
    "-1-0",
    "1--1",
    "+",
    "",
    "0" * 200,
    "1-" + "0" * 200,
    # Redis would take these, but no event ever carried such an id.
    "$",
    "1-",
    "-",
    "+1-0",
    "1-+1",
    "1-*",
    "0x10-0",
]


def _stream_path(generation_id: str) -> str:
    return f"/v1/generations/{generation_id}/stream"


def _local_port(response: httpx.Response) -> int:
    """The client-side port of the connection the response came on."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


async def _finished_generation(client: httpx.AsyncClient, user, tag: str) -> list:
    conversation_id = await new_conversation(client, user)
    events = await stream_chat(client, user, conversation_id, f"[[tag={tag} tokens=6]]")
    assert events[-1].event == "done"
    return events


async def _resume(client: httpx.AsyncClient, user, generation_id: str, cursor: str) -> list:
    headers = {**user.headers, "Last-Event-ID": cursor}
    async with client.stream("GET", _stream_path(generation_id), headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        return await asyncio.wait_for(read_events(response), GENEROUS_SECONDS)


@pytest.mark.parametrize("cursor", HOSTILE_CURSORS)
async def test_hostile_last_event_id_is_refused_and_the_connection_kept(
    api_server, make_user, cursor
):
    user = make_user()
    # One connection, so the next request shows whether the refusal kept it open.
    async with httpx.AsyncClient(
        base_url=api_server, timeout=GENEROUS_SECONDS, limits=httpx.Limits(max_connections=1)
    ) as client:
        events = await _finished_generation(client, user, "cursor-hostile")
        generation_id = events[0].data["generation_id"]
        headers = {**user.headers, "Last-Event-ID": cursor}
        async with client.stream("GET", _stream_path(generation_id), headers=headers) as refused:
            body = await asyncio.wait_for(refused.aread(), GENEROUS_SECONDS)
            refused_on = _local_port(refused)
        assert refused.status_code == 400, body
        answer = refused.json()
        assert answer["code"] == "validation_error"
        assert isinstance(answer["detail"], str) and "Last-Event-ID" in answer["detail"]
        assert refused.headers.get("connection", "").lower() != "close"

        async with client.stream("GET", _stream_path(generation_id), headers=user.headers) as again:
            assert again.status_code == 200
            replayed = await asyncio.wait_for(read_events(again), GENEROUS_SECONDS)
            assert _local_port(again) == refused_on
    assert [(e.id, e.event) for e in replayed] == [(e.id, e.event) for e in events]


async def test_resume_accepts_every_form_of_a_real_id(client, make_user):
    user = make_user()
    events = await _finished_generation(client, user, "cursor-forms")
    generation_id = events[0].data["generation_id"]
    ms, seq = events[2].id.split("-")
    after_second = [e.id for e in events[3:]]

    assert [e.id for e in await _resume(client, user, generation_id, events[2].id)] == after_second
    # Leading zeros name the same id.
    padded = f"{int(ms):020d}-{int(seq):05d}"
    assert [e.id for e in await _resume(client, user, generation_id, padded)] == after_second
    # `<ms>` alone is `<ms>-0`: what follows it is every entry of a later millisecond, or
    # of the same one with a higher sequence number.
    later = [e.id for e in events if tuple(map(int, e.id.split("-"))) > (int(ms), 0)]
    assert [e.id for e in await _resume(client, user, generation_id, ms)] == later
    assert [e.id for e in await _resume(client, user, generation_id, "0-0")] == [
        e.id for e in events
    ]


async def test_cursor_at_or_past_the_end_of_a_finished_stream_ends_at_once(client, make_user):
    user = make_user()
    events = await _finished_generation(client, user, "cursor-spent")
    generation_id = events[0].data["generation_id"]
    terminal_ms, _ = events[-1].id.split("-")

    for cursor in (
        events[-1].id,
        f"{terminal_ms}-{STREAM_ID_MAX}",
        str(int(terminal_ms) + 1),
        f"{STREAM_ID_MAX}-{STREAM_ID_MAX}",
    ):
        assert await _resume(client, user, generation_id, cursor) == [], cursor

    # Just before the end, the end itself is still sent.
    [last] = await _resume(client, user, generation_id, events[-2].id)
    assert (last.id, last.event) == (events[-1].id, "done")


async def test_cursor_past_the_end_of_a_running_stream_ends_when_it_finishes(client, make_user):
    user = make_user()
    conversation_id = await new_conversation(client, user)
    content = "[[tag=cursor-ahead tokens=20 delay=0.05]]"
    async with open_chat_stream(client, user, conversation_id, content) as live:
        lines = live.aiter_lines()
        [start] = await read_events(lines, stop_after=1)
        generation_id = start.data["generation_id"]
        ahead = await _resume(client, user, generation_id, f"{STREAM_ID_MAX}-0")
        rest = await asyncio.wait_for(read_events(lines), GENEROUS_SECONDS)
    assert ahead == []
    assert rest[-1].event == "done"


async def _keeps_flowing_beside(client, make_user, disrupt) -> tuple[int, bytes]:
    """User A's stream in flight while `disrupt()` opens another user's failing read:
    A's stream must still run to its end. `disrupt` returns that read's response, held
    open until A is done (so a reader that kept the hub down would be seen hanging A)."""
    alice = make_user()
    conversation_id = await new_conversation(client, alice)
    content = "[[tag=cursor-alice tokens=60 delay=0.03]]"
    async with open_chat_stream(client, alice, conversation_id, content) as live:
        lines = live.aiter_lines()
        head = await read_events(lines, stop_after=3)
        async with disrupt() as other:
            tail = await asyncio.wait_for(read_events(lines), GENEROUS_SECONDS)
            answer = other.status_code, await asyncio.wait_for(other.aread(), GENEROUS_SECONDS)
    events = head + tail
    assert events[-1].event == "done"
    assert text_of(events) == expected_reply(content)
    return answer


async def test_other_streams_keep_flowing_beside_a_hostile_cursor(client, make_user):
    bob = make_user()
    generation_id = (await _finished_generation(client, bob, "cursor-bob"))[0].data["generation_id"]
    headers = {**bob.headers, "Last-Event-ID": "0-99999999999999999999999"}

    status, body = await _keeps_flowing_beside(
        client,
        make_user,
        lambda: client.stream("GET", _stream_path(generation_id), headers=headers),
    )
    assert status == 400, body


async def test_an_unreadable_stream_ends_only_its_own_reader(client, make_user):
    bob = make_user()
    generation_id = (await _finished_generation(client, bob, "cursor-bob"))[0].data["generation_id"]
    # Redis refuses an XREAD naming a key that holds no stream: the shared read includes
    # every relayed key, so this reader's key fails the command for all of them.
    sync_redis().set(stream_key(generation_id), "not a stream")

    status, body = await _keeps_flowing_beside(
        client,
        make_user,
        lambda: client.stream("GET", _stream_path(generation_id), headers=bob.headers),
    )
    assert status == 200
    [event] = await read_events(_lines(body))
    assert (event.event, event.data["code"]) == ("error", "stream_unreadable")

    # The reader goes on serving new streams too.
    again = await _finished_generation(client, bob, "cursor-after")
    assert again[-1].event == "done"


async def _lines(body: bytes):
    for line in body.decode().splitlines():
        yield line
