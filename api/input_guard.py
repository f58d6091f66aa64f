"""The edge of every HTTP route: body limits, slow bodies and the input rules.

A pure ASGI middleware, so it sees the body as it streams in: a body over its
route's limit (`MAX_BODY_BYTES`; `MAX_AI_BODY_BYTES` on the AI routes, whose bodies
carry images inline; `ATTACHMENT_MAX_BYTES` on the image upload) is answered 413 as
soon as its size is known, never read whole; a body that trickles in longer than
`BODY_TIMEOUT_SECONDS` is 408.
A JSON or form body, the query string and the path are then held to
core/input_rules.py before any route, encoder, queue or database sees them. The
body it read is handed on unchanged, so routes parse it as before.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body, send_json_error, validation_body
from core.config import Settings
from core.input_rules import InputRejected, check_strings, issue, parse_json

# Routes whose bodies may carry images inline (API.md, MAX_AI_BODY_BYTES).
_AI_PATHS = (
    "/v1/chat/completions",
    "/v1/plugin-api/chat/completions",
    "/api/plugin-api/chat/completions",
    "/v1/messages",
    "/v1/responses",
)
# The upload route: its limit is the image's own (ATTACHMENT_MAX_BYTES) plus room for the
# multipart envelope (boundaries, part headers); the route checks the file itself.
_ATTACHMENT_PATH = "/v1/attachments"
MULTIPART_OVERHEAD_BYTES = 16 * 1024
_FORM = b"application/x-www-form-urlencoded"
# Bodies above this are checked in a worker thread.
_INLINE_CHECK_BYTES = 256 * 1024


class InputGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            _check_target(scope)
        except InputRejected as rejected:
            await _refuse_input(path, rejected, send)
            return

        headers = dict(scope["headers"])
        limit = self._limit(path)
        declared = headers.get(b"content-length")
        # A client waiting for `100 Continue` never sends the body we refuse: the
        # connection cannot go on, since the rest of its bytes would not be a request.
        keep_alive = b"100-continue" not in headers.get(b"expect", b"").lower()
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(path, limit, send, keep_alive)
            return
        if declared in (None, b"0") and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return

        try:
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                body = await _read_body(receive, limit)
        except TimeoutError:
            await _timed_out(path, send)
            return
        except _TooLarge:
            await _too_large(path, limit, send, keep_alive)
            return
        except _Disconnected:
            return

        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        try:
            if len(body) > _INLINE_CHECK_BYTES:
                # Seconds of CPU on a large body: off the event loop, so every other
                # request and stream of this process keeps going meanwhile.
                await anyio.to_thread.run_sync(_check_body, body, content_type)
            else:
                _check_body(body, content_type)
        except InputRejected as rejected:
            await _refuse_input(path, rejected, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _limit(self, path: str) -> int:
        if path.startswith(_AI_PATHS):
            return self.settings.max_ai_body_bytes
        if path == _ATTACHMENT_PATH:
            return self.settings.attachment_max_bytes + MULTIPART_OVERHEAD_BYTES
        return self.settings.max_body_bytes


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once, then the real channel (a streaming answer listens there for a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _check_target(scope: Scope) -> None:
    if "\x00" in scope["path"]:
        raise InputRejected([issue(("path",), "The path contains a NUL character.", "string_nul")])
    query: bytes = scope.get("query_string", b"")
    if query:
        # As Starlette reads it: latin-1 for the raw bytes, UTF-8 (replacing) when unquoting.
        check_strings(parse_qsl(query.decode("latin-1"), keep_blank_values=True), ("query",))


def _check_body(body: bytes, content_type: bytes) -> None:
    if not body:
        return
    if content_type == _FORM:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InputRejected(
                [issue(("body",), "The form is not valid UTF-8.", "utf8_invalid")]
            ) from None
        check_strings(parse_qsl(text, keep_blank_values=True), ("body",))
    elif not content_type.startswith(b"multipart/"):
        # No route reads a body as anything but JSON or a form (FastAPI reads JSON content
        # types and none; the login route reads any other type as JSON itself).
        parse_json(body)


async def _refuse_input(path: str, rejected: InputRejected, send: Send) -> None:
    status, body = validation_body(path, rejected.issues)
    await send_json_error(send, status, body)


async def _too_large(path: str, limit: int, send: Send, keep_alive: bool) -> None:
    # Kept alive, uvicorn reads and drops the rest of the body, then serves the next request.
    await _send_error(
        send,
        path,
        413,
        "payload_too_large",
        f"The request body is larger than {limit} bytes.",
        None if keep_alive else {"Connection": "close"},
    )


async def _timed_out(path: str, send: Send) -> None:
    # The rest of the body may still be on its way: the connection cannot be reused.
    await _send_error(
        send,
        path,
        408,
        "request_timeout",
        "The request body took too long to arrive.",
        {"Connection": "close"},
    )


async def _send_error(
    send: Send,
    path: str,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    await send_json_error(send, status, error_body(path, status, code, message), headers)
