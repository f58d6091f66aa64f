"""Load shedding: refuse a new generation at once while this process knows the pool is full.

Under a flood, refusing through the gate still costs each request its parsing,
auth and a Redis round trip on the one event loop, so refusals queued for
seconds behind each other and behind the admitted streams. This pure ASGI guard
sits in front of the generation-starting routes and answers 503 `unavailable`
with `Retry-After` before any of that when `pool_view` (core/admission.py) says
the pool is full: the slots seen in use at the last verdict, for a short time,
plus this process' requests still waiting for theirs. It only ever refuses
early; every admission is still the gate's atomic script.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_body, send_json_error
from core.admission import POOL_FULL_MESSAGE, RETRY_AFTER_SECONDS, pool_view

# The routes that start a generation (the WebSocket starts its turns inside one connection).
STARTING_PATHS = re.compile(
    r"^(?:/v1/(?:chat/completions|plugin-api/chat/completions|conversations/[^/]+/chat(?:/stream)?)"
    # The compatibility APIs' routes that start one.
    r"|/api/v1/developer/chat|/api/plugin-api/chat/completions"
    r"|/conversations/[^/]+/(?:chat|messages))$"
)


class ShedGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not STARTING_PATHS.match(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        if pool_view.full():
            await _refuse(scope["path"], send)
            return
        with pool_view.starting():
            await self.app(scope, receive, send)


async def _refuse(path: str, send: Send) -> None:
    body = error_body(path, 503, "unavailable", POOL_FULL_MESSAGE)
    await send_json_error(send, 503, body, {"Retry-After": str(RETRY_AFTER_SECONDS)})
