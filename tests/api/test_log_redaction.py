"""Access tokens in WebSocket URLs stay out of the API's logs (uvicorn logs each handshake
with its query string)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.conftest import ServiceProcess, start_api
from tests.sse import new_conversation


@pytest.fixture(scope="module")
def logged_api(service_env: dict[str, str]) -> Iterator[tuple[ServiceProcess, str]]:
    """An API process of its own, so its log holds only this module's requests."""
    server, base_url = start_api(service_env)
    yield server, base_url
    server.stop()


async def test_websocket_tokens_are_redacted_from_the_log(
    logged_api: tuple[ServiceProcess, str], make_user
) -> None:
    server, base_url = logged_api
    user = make_user()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        conversation_id = await new_conversation(client, user)
    ws_base = base_url.replace("http", "ws")
    path = f"/v1/conversations/{conversation_id}/ws"
    async with websockets.connect(f"{ws_base}{path}?token={user.access_token}&v=1") as ws:
        await ws.send(json.dumps({"type": "nonsense"}))
        assert json.loads(await ws.recv())["code"] == "validation_error"
    # A handshake refused before any route (no such path) is logged with its query too.
    refused_url = f"{ws_base}/v1/no-such-socket?access_token={user.access_token}"
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(refused_url):
            pass

    # The lines are there, with the parameters' names and the value replaced.
    accepted = f'"WebSocket {path}?token=<redacted>&v=1" [accepted]'
    refused = '"WebSocket /v1/no-such-socket?access_token=<redacted>"'
    server.wait_for(lambda: accepted in server.log_text() and refused in server.log_text(), 10)
    assert user.access_token not in server.log_text()
