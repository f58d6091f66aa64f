"""Admission control: past the pool's or a user's concurrent-stream limit, a new
generation is refused at once, and the slot comes back when a generation ends."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core.admission import POOL_KEY, user_key
from core.redis import sync_redis
from tests.conftest import start_api
from tests.sse import new_conversation, open_chat_stream, read_events

pytestmark = pytest.mark.usefixtures("celery_worker")


@pytest.fixture(scope="module")
def small_api(service_env):
    """An API replica admitting two streams in all and one per user (same worker pool)."""
    server, base_url = start_api(
        {**service_env, "CHAT_MAX_STREAMS": "2", "CHAT_MAX_STREAMS_PER_USER": "1"}
    )
    yield base_url
    server.stop()


def _completion(content: str) -> dict:
    return {"model": "auto", "stream": True, "messages": [{"role": "user", "content": content}]}


async def test_refused_past_capacity_and_released_at_the_end(small_api: str, make_user) -> None:
    first, second, third = make_user(), make_user(), make_user()
    async with httpx.AsyncClient(base_url=small_api, timeout=30) as client:
        slow = "[[tag=adm tokens=40 delay=0.05]]"
        async with client.stream(
            "POST", "/v1/chat/completions", json=_completion(slow), headers=first.headers
        ) as running:
            assert running.status_code == 200
            lines = running.aiter_lines()
            await anext(lines)

            # The same user's second stream: its own limit, 429 with Retry-After.
            own = await client.post(
                "/v1/chat/completions", json=_completion("[[tokens=2]]"), headers=first.headers
            )
            assert own.status_code == 429, own.text
            assert own.json()["error"]["code"] == "rate_limited"
            assert int(own.headers["retry-after"]) >= 1
            # Judged after the rate limits, whose window it reports untouched.
            assert own.headers["x-ratelimit-limit"] == "20"
            assert own.headers["x-ratelimit-remaining"] == "19"
            usage = await client.get("/v1/developer/usage/current", headers=first.headers)
            assert usage.json()["quota_used"] == 1

            # Another user takes the pool's last slot on the conversation route.
            conversation_id = await new_conversation(client, second)
            async with open_chat_stream(
                client, second, conversation_id, "[[tag=adm2 tokens=40 delay=0.05]]"
            ) as other:
                other_lines = other.aiter_lines()
                await read_events(other_lines, stop_after=2)
                assert sync_redis().zcard(POOL_KEY) == 2

                full = await client.post(
                    "/v1/chat/completions", json=_completion("[[tokens=2]]"), headers=third.headers
                )
                assert full.status_code == 503, full.text
                assert full.json()["error"]["code"] == "unavailable"
                assert int(full.headers["retry-after"]) >= 1
                # Refused before the quota: nothing reserved, nothing written.
                usage = await client.get("/v1/developer/usage/current", headers=third.headers)
                assert usage.json()["quota_used"] == 0

                # The first stream ends: its slot is free by the time its client sees the end.
                async for _line in lines:
                    pass
                assert sync_redis().zcard(user_key(first.id)) == 0
                answer = await client.post(
                    "/v1/chat/completions",
                    json={**_completion("[[tag=adm3 tokens=3]]"), "stream": False},
                    headers=third.headers,
                )
                assert answer.status_code == 200, answer.text
                assert (await read_events(other_lines))[-1].event == "done"
    # Every slot comes back once everything ended.
    for _ in range(50):
        if sync_redis().zcard(POOL_KEY) == 0:
            break
        await asyncio.sleep(0.1)
    assert sync_redis().zcard(POOL_KEY) == 0


@pytest.fixture(scope="module")
def one_slot_api(service_env):
    """An API replica admitting one stream, trusting the pool's fill it saw for 5 s."""
    server, base_url = start_api({**service_env, "CHAT_MAX_STREAMS": "1", "CHAT_SHED_SECONDS": "5"})
    yield base_url
    server.stop()


async def test_full_pool_is_shed_before_auth_and_admits_once_a_slot_frees(
    one_slot_api: str, make_user
) -> None:
    user = make_user()
    async with httpx.AsyncClient(base_url=one_slot_api, timeout=30) as client:
        async with client.stream(
            "POST",
            "/v1/chat/completions",
            json=_completion("[[tag=shed tokens=40 delay=0.05]]"),
            headers=user.headers,
        ) as running:
            assert running.status_code == 200
            lines = running.aiter_lines()
            await anext(lines)

            # The admission just seen filled the pool: refused at once, before any auth
            # (no credentials, yet 503, not 401), each route in its own envelope.
            shed = await client.post("/v1/chat/completions", json=_completion("[[tokens=2]]"))
            assert shed.status_code == 503, shed.text
            assert shed.json()["error"]["code"] == "unavailable"
            assert shed.json()["error"]["type"] == "api_error"
            assert shed.headers["retry-after"] == "1"
            assert shed.headers["x-request-id"]
            conversation = await client.post(
                "/v1/conversations/00000000-0000-0000-0000-000000000000/chat/stream",
                json={"content": "hi"},
            )
            assert conversation.status_code == 503, conversation.text
            assert conversation.json() == {
                "detail": "Every worker is busy; try again shortly.",
                "code": "unavailable",
            }
            # Other routes are not shed.
            models = await client.get("/v1/models", headers=user.headers)
            assert models.status_code == 200

            async for _line in lines:
                pass

        # The slot is free; a client honouring Retry-After is admitted once the view expires.
        for _ in range(15):
            answer = await client.post(
                "/v1/chat/completions",
                json={**_completion("[[tag=shed2 tokens=3]]"), "stream": False},
                headers=user.headers,
            )
            if answer.status_code != 503:
                break
            await asyncio.sleep(int(answer.headers["retry-after"]))
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "w0-shed2 w1-shed2 w2-shed2 "
