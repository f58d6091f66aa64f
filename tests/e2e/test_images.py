"""Images in chat through the running stack: an upload travels in a conversation turn to
each provider in its format (byte for byte), content parts pass through the OpenAI
SDK, a model without vision is refused, and nothing stays that nobody owns."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import openai
import pytest

from core.attachments import ImageRef
from core.chat import IMAGE_TOKEN_ESTIMATE, trim_history
from core.db import worker_session
from models import Attachment
from tests.sse import new_conversation, stream_chat
from workers.tasks.attachments import sweep

pytestmark = pytest.mark.usefixtures("celery_worker")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(255, -1, -1)) * 3


async def upload(client, user, data: bytes) -> dict:
    answer = await client.post(
        "/v1/attachments", headers=user.headers, files={"file": ("x.bin", data, "image/png")}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def user_turns(fake_llm, tag: str) -> list[dict]:
    return [r for r in fake_llm.requests_tagged(tag) if not r["is_title"]]


def data_url_bytes(url: str, mime_type: str) -> bytes:
    prefix = f"data:{mime_type};base64,"
    assert url.startswith(prefix)
    return base64.b64decode(url.removeprefix(prefix), validate=True)


@pytest.mark.parametrize(("plan", "model"), [("free", "deepseek-flash"), ("pro", "kimi-k2.6")])
async def test_a_turn_sends_its_images_as_openai_data_urls(
    client, make_user, fake_llm, plan, model
):
    user = make_user(plan=plan)
    png, jpeg = await upload(client, user, PNG), await upload(client, user, JPEG)
    conversation_id = await new_conversation(client, user, model=model)
    tag = f"img-{plan}"
    content = f"What is in these? [[tag={tag}]]"

    events = await stream_chat(
        client, user, conversation_id, content, attachments=[png["id"], jpeg["id"]]
    )
    assert events[-1].event == "done", events[-1].data

    [request] = user_turns(fake_llm, tag)
    assert request["protocol"] == "openai" and request["body"]["model"] == model
    parts = request["body"]["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert data_url_bytes(parts[0]["image_url"]["url"], "image/png") == PNG
    assert data_url_bytes(parts[1]["image_url"]["url"], "image/jpeg") == JPEG
    assert parts[2] == {"type": "text", "text": content}

    detail = (await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)).json()
    asked, reply = detail["messages"]
    assert asked["attachments"] == [
        {"id": png["id"], "mime_type": "image/png", "size": len(PNG)},
        {"id": jpeg["id"], "mime_type": "image/jpeg", "size": len(JPEG)},
    ]
    assert reply["attachments"] == []

    # The next turn sends the earlier image again, as history.
    follow = f"And now? [[tag={tag}-2]]"
    assert (await stream_chat(client, user, conversation_id, follow))[-1].event == "done"
    [second] = user_turns(fake_llm, f"{tag}-2")
    first_turn = second["body"]["messages"][0]
    assert data_url_bytes(first_turn["content"][0]["image_url"]["url"], "image/png") == PNG
    assert second["body"]["messages"][-1] == {"role": "user", "content": follow}


async def test_a_turn_sends_its_image_as_an_anthropic_block(client, make_user, fake_llm):
    user = make_user(plan="max")
    image = await upload(client, user, JPEG)
    conversation_id = await new_conversation(client, user, model="claude-sonnet-5-5")
    content = "Read this receipt [[tag=img-claude]]"

    answer = await client.post(
        f"/v1/conversations/{conversation_id}/chat",
        headers=user.headers,
        json={"content": content, "attachments": [image["id"]]},
    )
    assert answer.status_code == 200, answer.text

    [request] = user_turns(fake_llm, "img-claude")
    assert request["protocol"] == "anthropic"
    blocks = request["body"]["messages"][-1]["content"]
    assert blocks[0]["type"] == "image"
    source = blocks[0]["source"]
    assert source["type"] == "base64" and source["media_type"] == "image/jpeg"
    assert base64.b64decode(source["data"], validate=True) == JPEG
    assert blocks[1] == {"type": "text", "text": content}


async def test_the_websocket_turn_takes_attachments(client, make_user, fake_llm, api_server):
    import json

    import websockets

    user = make_user()
    image = await upload(client, user, PNG)
    conversation_id = await new_conversation(client, user)
    url = api_server.replace("http", "ws", 1) + f"/v1/conversations/{conversation_id}/ws"
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {user.access_token}"}
    ) as socket:
        await socket.send(
            json.dumps({"type": "chat", "content": "[[tag=img-ws]]", "attachments": [image["id"]]})
        )
        while (event := json.loads(await socket.recv()))["type"] not in ("done", "error"):
            pass
    assert event["type"] == "done", event
    [request] = user_turns(fake_llm, "img-ws")
    url0 = request["body"]["messages"][-1]["content"][0]["image_url"]["url"]
    assert data_url_bytes(url0, "image/png") == PNG


async def test_refusals(client, make_user):
    user, other = make_user(plan="pro"), make_user(plan="pro")
    mine = await upload(client, user, PNG)
    theirs = await upload(client, other, PNG)
    conversation_id = await new_conversation(client, user)
    path = f"/v1/conversations/{conversation_id}/chat/stream"

    blind = await client.post(
        path,
        headers=user.headers,
        json={"content": "hi", "model": "deepseek-v4-pro", "attachments": [mine["id"]]},
    )
    assert blind.status_code == 400
    assert blind.json()["code"] == "unsupported_content"

    foreign = await client.post(
        path, headers=user.headers, json={"content": "hi", "attachments": [theirs["id"]]}
    )
    assert foreign.status_code == 404 and foreign.json()["code"] == "not_found"
    missing = await client.post(
        path, headers=user.headers, json={"content": "hi", "attachments": [str(uuid.uuid4())]}
    )
    assert missing.status_code == 404

    too_many = await client.post(
        path, headers=user.headers, json={"content": "hi", "attachments": [mine["id"]] * 9}
    )
    assert too_many.status_code == 422
    # Nothing was stored by the refused turns.
    detail = (await client.get(f"/v1/conversations/{conversation_id}", headers=user.headers)).json()
    assert detail["messages"] == []


def sdk(api_server: str, user) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=api_server + "/v1", api_key=user.access_token, max_retries=0)


def image_parts(text: str) -> list[dict]:
    encoded = base64.b64encode(PNG).decode()
    return [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
        {"type": "image_url", "image_url": {"url": "https://images.example.com/cat.jpg"}},
    ]


async def test_content_parts_through_the_openai_sdk(api_server, make_user, fake_llm):
    user = make_user(plan="max")
    client = sdk(api_server, user)

    answer = await client.chat.completions.create(
        model="deepseek-flash",
        messages=[{"role": "user", "content": image_parts("[[tag=img-sdk-oa]]")}],
    )
    assert answer.choices[0].message.content
    [request] = user_turns(fake_llm, "img-sdk-oa")
    # Passed on as sent: the https URL is the provider's to fetch, never ours.
    assert request["body"]["messages"][-1]["content"] == image_parts("[[tag=img-sdk-oa]]")

    stream = await client.chat.completions.create(
        model="claude-haiku-5-5",
        messages=[{"role": "user", "content": image_parts("[[tag=img-sdk-an]]")}],
        stream=True,
    )
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    [request] = user_turns(fake_llm, "img-sdk-an")
    blocks = request["body"]["messages"][-1]["content"]
    assert blocks[0] == {"type": "text", "text": "[[tag=img-sdk-an]]"}
    assert blocks[1]["source"]["type"] == "base64"
    assert base64.b64decode(blocks[1]["source"]["data"]) == PNG
    assert blocks[2]["source"] == {"type": "url", "url": "https://images.example.com/cat.jpg"}


async def test_the_sdk_is_refused_images_for_a_model_without_vision(api_server, make_user):
    client = sdk(api_server, make_user(plan="pro"))
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="deepseek-v4-pro", messages=[{"role": "user", "content": image_parts("hi")}]
        )
    assert refused.value.code == "unsupported_content"
    for url in ("http://images.example.com/cat.jpg", "file:///etc/passwd", "data:text/html,x"):
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(
                model="kimi-k2.6",
                messages=[
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
                ],
            )
        assert bad.value.code == "unsupported_content"


async def test_deleting_a_conversation_deletes_its_images(client, make_user):
    user = make_user()
    image = await upload(client, user, PNG)
    kept = await upload(client, user, JPEG)
    shared = await upload(client, user, PNG)
    doomed = await new_conversation(client, user)
    other = await new_conversation(client, user)
    for conversation_id, ids in ((doomed, [image["id"], shared["id"]]), (other, [shared["id"]])):
        answer = await client.post(
            f"/v1/conversations/{conversation_id}/chat",
            headers=user.headers,
            json={"content": "look", "attachments": ids},
        )
        assert answer.status_code == 200, answer.text

    deleted = await client.delete(f"/v1/conversations/{doomed}", headers=user.headers)
    assert deleted.status_code == 204
    assert (
        await client.get(f"/v1/attachments/{image['id']}", headers=user.headers)
    ).status_code == 404
    # Another conversation still shows this one; an unsent upload is the sweep's.
    for survivor in (shared, kept):
        found = await client.get(f"/v1/attachments/{survivor['id']}", headers=user.headers)
        assert found.status_code == 200


async def test_the_sweep_removes_day_old_uploads_nobody_sent(client, make_user):
    user = make_user()
    sent, unsent = await upload(client, user, PNG), await upload(client, user, JPEG)
    conversation_id = await new_conversation(client, user)
    answer = await client.post(
        f"/v1/conversations/{conversation_id}/chat",
        headers=user.headers,
        json={"content": "look", "attachments": [sent["id"]]},
    )
    assert answer.status_code == 200

    now = datetime.now(UTC)
    assert sweep((now + timedelta(hours=23)).isoformat()) == 0
    assert sweep((now + timedelta(hours=25)).isoformat()) == 1
    with worker_session() as session:
        left = {str(a.id) for a in session.query(Attachment).all()}
    assert left == {sent["id"]}
    assert unsent["id"] not in left


def test_history_drops_the_oldest_images_first():
    def turn(text: str, images: int) -> dict:
        refs = [ImageRef(uuid.uuid4(), "image/png", 1000) for _ in range(images)]
        return {"role": "user", "content": text, "images": refs}

    oldest, older, newest = turn("a", 2), turn("b", 2), turn("c", 3)
    history = [oldest, {"role": "assistant", "content": "x"}, older, newest]
    # Room for the texts, the newest turn's three images and two more.
    window = 6 * IMAGE_TOKEN_ESTIMATE
    kept = trim_history(None, history, window, reserve_for_output=0)
    assert [m["content"] for m in kept] == ["a", "x", "b", "c"]
    assert [len(m.get("images") or ()) for m in kept] == [0, 0, 2, 3]
    # A newest turn keeps its images however small the window.
    [alone] = trim_history(None, [turn("q", 3)], 10, reserve_for_output=0)
    assert len(alone["images"]) == 3
