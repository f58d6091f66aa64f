"""Fault cases that need their own worker: a worker killed mid-stream, and a user's
own endpoint on loopback (allowed only with ALLOW_PRIVATE_MODEL_URLS)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

import httpx
import pytest
import redis
import websockets

from core.admission import POOL_KEY, user_key
from core.redis import sync_redis
from tests.conftest import SLOT, TEST_ENV, start_api, start_worker
from tests.fakes.openai_protocol import expected_reply
from tests.sse import new_conversation, open_chat_stream, read_events, stream_chat, text_of

# Own broker db (per test slot): tasks of this pair never reach the session-wide worker.
ISOLATED_BROKER_URL = TEST_ENV["BROKER_URL"].rsplit("/", 1)[0] + f"/{7 - SLOT}"


@pytest.fixture
def isolated_pair(service_env):
    """`start(**env)` runs one more API and worker on their own broker queue."""
    redis.Redis.from_url(ISOLATED_BROKER_URL).flushdb()
    started = []

    def start(**extra: str):
        env = {**service_env, "BROKER_URL": ISOLATED_BROKER_URL, **extra}
        api, base_url = start_api(env)
        worker = start_worker(env, name=f"faults-{len(started)}", concurrency=4)
        started.extend([api, worker])
        return base_url, worker

    yield start
    for process in reversed(started):
        process.stop()


@pytest.mark.slow
async def test_worker_killed_mid_stream_ends_client_stream_with_error(
    isolated_pair, make_user, fake_llm
):
    base_url, worker = isolated_pair()
    user = make_user()
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        conversation_id = await new_conversation(client, user)
        content = "[[tag=killed tokens=1000 delay=0.05]]"
        async with open_chat_stream(client, user, conversation_id, content) as response:
            lines = response.aiter_lines()
            head = await read_events(lines, stop_after=3)
            worker.process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            tail = await asyncio.wait_for(read_events(lines), timeout=30)
        assert time.monotonic() - killed_at < 20
        assert tail[-1].event == "error"
        assert tail[-1].data["code"] == "worker_lost"
        generation_id = head[0].data["generation_id"]
        streamed = text_of(head + tail)
        assert expected_reply(content).startswith(streamed)

    # The sweep (beat job) marks it failed and keeps what was streamed.
    from workers.tasks.maintenance import sweep_generations

    assert sweep_generations() == 1
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        status = (await client.get(f"/v1/generations/{generation_id}", headers=user.headers)).json()
        assert status["status"] == "failed"
        detail = (
            await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)
        ).json()
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
        assert detail["messages"][0]["content"] == content
        assert detail["messages"][-1]["status"] == "failed"
        assert detail["messages"][-1]["content"] == streamed
        # Charged once (a reply was produced, so no refund), and the provider called once.
        usage = await client.get("/v1/developer/usage/current", headers=user.headers)
        assert usage.json()["quota_used"] == 1
    assert len([r for r in fake_llm.requests_tagged("killed") if not r["is_title"]]) == 1
    # The sweep gave the dead worker's streaming slot back.
    assert sync_redis().zscore(POOL_KEY, generation_id) is None
    assert sync_redis().zcard(user_key(user.id)) == 0


async def _read_completion_chunks(lines, chunks: list[dict], until) -> None:
    async for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            chunks.append(json.loads(line[6:]))
            if until(chunks):
                return


def _completion_text(chunks: list[dict]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )


@pytest.mark.slow
@pytest.mark.parametrize("stored", [True, False], ids=["after-first-token", "before-first-token"])
async def test_worker_killed_mid_completion_ends_openai_stream_with_error(
    isolated_pair, make_user, fake_llm, stored
):
    """The stateless path is claimed in Redis and stores its row after the first token:
    a worker killed on either side of that ends the client's stream, charges once, and
    the sweep gives its streaming slot back (from the row, or from Redis alone)."""
    base_url, worker = isolated_pair()
    user = make_user()
    tag = f"killed-completion-{stored}"
    knobs = "tokens=1000 delay=0.05" if stored else "first_delay=30"
    content = f"[[tag={tag} {knobs}]]"
    body = {
        "model": "deepseek-chat",
        "stream": True,
        "messages": [{"role": "user", "content": content}],
    }
    chunks: list[dict] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers=user.headers
        ) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            await asyncio.wait_for(_read_completion_chunks(lines, chunks, len), timeout=30)
            generation_id = str(uuid.UUID(chunks[0]["id"].removeprefix("chatcmpl-")))
            path = f"/v1/generations/{generation_id}"
            if stored:
                for _ in range(100):
                    if (await client.get(path, headers=user.headers)).status_code == 200:
                        break
                    await asyncio.sleep(0.05)
            else:
                # Claimed and waiting for the provider's first token.
                for _ in range(400):
                    if fake_llm.requests_tagged(tag):
                        break
                    await asyncio.sleep(0.05)
                assert fake_llm.requests_tagged(tag)
            assert (await client.get(path, headers=user.headers)).status_code == (
                200 if stored else 404
            )
            worker.process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await asyncio.wait_for(
                _read_completion_chunks(lines, chunks, lambda items: "error" in items[-1]),
                timeout=30,
            )
        assert time.monotonic() - killed_at < 20
        assert chunks[-1]["error"]["code"] == "worker_lost"
        assert expected_reply(content).startswith(_completion_text(chunks))
        assert bool(_completion_text(chunks)) == stored

        from workers.tasks.maintenance import sweep_generations

        assert sweep_generations() == 1
        status = await client.get(path, headers=user.headers)
        assert status.json()["status"] == "failed" if stored else status.status_code == 404
        usage = await client.get("/v1/developer/usage/current", headers=user.headers)
        assert usage.json()["quota_used"] == 1
    assert len(fake_llm.requests_tagged(tag)) == 1
    assert sync_redis().zscore(POOL_KEY, generation_id) is None
    assert sync_redis().zcard(user_key(user.id)) == 0


@pytest.mark.slow
async def test_provider_silent_after_first_token_fails_with_partial_kept(isolated_pair, make_user):
    base_url, _ = isolated_pair(PROVIDER_READ_TIMEOUT_SECONDS="1.5")
    user = make_user()
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        conversation_id = await new_conversation(client, user)
        content = "[[tag=silent tokens=10 hang_after=3]]"
        events = await asyncio.wait_for(stream_chat(client, user, conversation_id, content), 30)
        assert events[-1].event == "error"
        assert events[-1].data["code"] == "upstream_error"
        assert "timed out" in events[-1].data["message"]
        streamed = text_of(events)
        assert streamed == expected_reply(content)[: len(streamed)] and streamed.count(" ") == 3
        detail = (
            await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)
        ).json()
        assert detail["messages"][-1]["status"] == "failed"
        assert detail["messages"][-1]["content"] == streamed


async def test_own_model_config_chat_uses_decrypted_key_and_never_shows_it(
    isolated_pair, make_user, fake_llm
):
    base_url, worker = isolated_pair(ALLOW_PRIVATE_MODEL_URLS="true")
    user = make_user()
    secret = "sk-user-own-secret-key-0123456789"
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        created = await client.post(
            "/v1/model-configs",
            json={"base_url": fake_llm.base_url + "/v1", "model": "my-llama", "api_key": secret},
            headers=user.headers,
        )
        assert created.status_code == 201, created.text
        config = created.json()
        assert config["api_key_hint"] == secret[-4:]
        conversation_id = await new_conversation(client, user, model_config_id=config["id"])
        content = "[[tag=own tokens=6]]"
        events = await stream_chat(client, user, conversation_id, content)
        assert text_of(events) == expected_reply(content)
        [request] = [r for r in fake_llm.requests_tagged("own") if not r["is_title"]]
        assert request["headers"]["authorization"] == f"Bearer {secret}"
        assert request["body"]["model"] == "my-llama"

        # A failing user endpoint: its error body is not echoed.
        events = await stream_chat(client, user, conversation_id, "[[tag=own2 status=500]]")
        assert events[-1].event == "error"
        assert "secret-internal-detail" not in json.dumps(events[-1].data)

        answers = [
            created.text,
            (await client.get("/v1/model-configs", headers=user.headers)).text,
            (
                await client.put(
                    f"/v1/model-configs/{config['id']}", json={"name": "n"}, headers=user.headers
                )
            ).text,
            (await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)).text,
        ]
        ws_url = base_url.replace("http", "ws") + f"/v1/conversations/{conversation_id}/ws"
        async with websockets.connect(f"{ws_url}?token={user.access_token}") as socket:
            await socket.send(json.dumps({"type": "chat", "content": "[[tag=own3 tokens=3]]"}))
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), 30))
                answers.append(json.dumps(message))
                if message["type"] in ("done", "error", "cancelled"):
                    break
    for text in answers:
        assert secret not in text
    logs = worker.log_text() + "".join(
        p.read_text(errors="replace") for p in worker.log_path.parent.glob("api-*.log")
    )
    assert secret not in logs
