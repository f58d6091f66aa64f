"""Conversations CRUD and chat: non-streaming, SSE and WebSocket."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import anyio
import redis.asyncio as aioredis
from anyio.abc import TaskGroup
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect, status
from fastapi.responses import Response, StreamingResponse
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from starlette.types import Message as ASGIMessage

from api.deps import (
    CurrentUser,
    OwnedConversation,
    RedisDep,
    SessionDep,
    authenticate_access_token,
)
from api.errors import sanitize_issues
from api.schemas.conversations import (
    ChatAnswer,
    ChatRequest,
    ConversationCreate,
    ConversationDetail,
    ConversationOut,
    ConversationPage,
    ConversationUpdate,
    SocketCancel,
    SocketChat,
    SocketMessage,
)
from api.streaming.sse import SSE_RESPONSES, sse_events
from api.streaming.start import (
    StartedGeneration,
    cancel_generation,
    owned_model_config,
    resolve_route,
    start_generation,
    wait_for_reply,
)
from api.streaming.websocket import error_payload, event_payload
from core.attachments import attachment_store
from core.chat import route_for_model
from core.config import settings
from core.db import async_session_factory
from core.errors import AppError, Unauthorized
from core.input_rules import InputRejected, issue, parse_json
from core.redis import redis_client
from core.streams import TERMINAL_EVENTS
from models import Conversation, Generation, Message, User

PG_BIGINT_MAX = 2**63 - 1

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.post(
    "",
    response_model=ConversationOut,
    status_code=status.HTTP_201_CREATED,
    operation_id="conversations-create",
)
async def create_conversation(
    body: ConversationCreate, user: CurrentUser, session: SessionDep
) -> Conversation:
    if body.model:
        route_for_model(user.plan, body.model)
    if body.model_config_id:
        await owned_model_config(session, user, body.model_config_id)
    conversation = Conversation(user_id=user.id, **body.model_dump())
    session.add(conversation)
    await session.commit()
    return conversation


@router.get("", response_model=ConversationPage, operation_id="conversations-list")
async def list_conversations(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    # Bounded to PostgreSQL's bigint: a larger number would fail in the database, not here.
    offset: Annotated[int, Query(ge=0, le=PG_BIGINT_MAX)] = 0,
) -> dict[str, Any]:
    total = await session.scalar(
        select(func.count()).select_from(Conversation).where(Conversation.user_id == user.id)
    )
    items = await session.scalars(
        select(Conversation)
        .where(Conversation.user_id == user.id)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return {"items": list(items), "total": total or 0, "limit": limit, "offset": offset}


@router.get(
    "/{conversation_id}", response_model=ConversationDetail, operation_id="conversations-get"
)
async def get_conversation(
    conversation: OwnedConversation,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=PG_BIGINT_MAX)] = None,
) -> dict[str, Any]:
    query = (
        select(Message)
        .where(Message.conversation_id == conversation.id)
        .options(selectinload(Message.attachments))
    )
    if before_id is not None:
        query = query.where(Message.id < before_id)
    newest_first = list(await session.scalars(query.order_by(Message.id.desc()).limit(limit + 1)))
    page = newest_first[:limit]
    return {
        **ConversationOut.model_validate(conversation).model_dump(),
        "messages": list(reversed(page)),
        "has_more": len(newest_first) > limit,
    }


@router.patch(
    "/{conversation_id}", response_model=ConversationOut, operation_id="conversations-rename"
)
async def rename_conversation(
    body: ConversationUpdate, conversation: OwnedConversation, session: SessionDep
) -> Conversation:
    conversation.title = body.title
    # A title the user chose is never replaced by the title job.
    conversation.title_generated = False
    await session.commit()
    return conversation


@router.delete(
    "/{conversation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    response_model=None,
    operation_id="conversations-delete",
)
async def delete_conversation(conversation: OwnedConversation, session: SessionDep) -> None:
    # Messages and generations go with it (ON DELETE CASCADE in the schema); its images are
    # deleted here, in the same transaction.
    await attachment_store.delete_for_conversation(session, conversation.id)
    await session.execute(delete(Conversation).where(Conversation.id == conversation.id))
    await session.commit()


async def start_turn(
    session: AsyncSession,
    redis: aioredis.Redis,
    user: User,
    conversation: Conversation,
    turn: ChatRequest,
) -> StartedGeneration:
    """A conversation turn (HTTP or WebSocket): its model resolved, then started."""
    route = await resolve_route(session, user, turn.model, conversation)
    return await start_generation(
        session,
        redis,
        user=user,
        route=route,
        conversation=conversation,
        content=turn.content,
        reasoning_effort=turn.reasoning_effort,
        attachments=turn.attachments,
    )


@router.post(
    "/{conversation_id}/chat", response_model=ChatAnswer, operation_id="conversations-chat"
)
async def chat(
    body: ChatRequest,
    user: CurrentUser,
    conversation: OwnedConversation,
    session: SessionDep,
    redis: RedisDep,
    response: Response,
) -> dict[str, Any]:
    started = await start_turn(session, redis, user, conversation, body)
    response.headers.update(started.headers)
    result = await wait_for_reply(started)
    return {**result, "generation_id": started.generation_id}


@router.post(
    "/{conversation_id}/chat/stream",
    response_class=StreamingResponse,
    response_model=None,
    responses=SSE_RESPONSES,
    operation_id="conversations-chat-stream",
)
async def chat_stream(
    body: ChatRequest,
    user: CurrentUser,
    conversation: OwnedConversation,
    session: SessionDep,
    redis: RedisDep,
) -> StreamingResponse:
    """Events: `start`, `reasoning`... (a thinking model's), `delta`..., then `done`,
    `error` or `cancelled`. A disconnect
    does not stop the generation; resume with `GET /v1/generations/{id}/stream`."""
    started = await start_turn(session, redis, user, conversation, body)
    return sse_events(started.events(), started.headers)


# A frame's refusals are named from here, as FastAPI names a request body's from "body".
_MESSAGE_LOC = ("message",)
_SOCKET_MESSAGE: TypeAdapter[SocketChat | SocketCancel] = TypeAdapter(SocketMessage)
# The subprotocol a browser offers, followed by its access token: `bearer, <token>`.
BEARER_SUBPROTOCOL = "bearer"
# Close codes: the HTTP status of the refusal, in the range RFC 6455 leaves to applications.
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404


class _Socket:
    """One chat WebSocket: sends are serialised, one generation runs at a time, and the
    session is checked again before every message the socket acts on."""

    def __init__(self, websocket: WebSocket, conversation_id: uuid.UUID, token: str):
        self.websocket = websocket
        self.conversation_id = conversation_id
        self.token = token
        self.lock = anyio.Lock()
        self.current: uuid.UUID | None = None
        self.closed = False

    async def send(self, payload: dict[str, Any]) -> None:
        async with self.lock:
            # A relay still running when the socket was closed has nobody to tell.
            if not self.closed:
                await self.websocket.send_json(payload)

    async def close(self, code: int) -> None:
        async with self.lock:
            if not self.closed:
                self.closed = True
                await self.websocket.close(code=code)

    async def authenticate(self, session: AsyncSession) -> User | None:
        """The token's user, or None once the client was told why and the socket closed.

        The same check as every HTTP request's (expiry, revoked session, inactive user):
        one Redis EXISTS and one primary-key read, so a logout or a password change
        elsewhere stops an open socket at its next message.
        """
        try:
            user, _ = await authenticate_access_token(self.token, session, redis_client())
        except Unauthorized as exc:
            await self.send(error_payload(exc.code, exc.detail))
            await self.close(CLOSE_UNAUTHORIZED)
            return None
        return user

    async def admit(self) -> bool:
        async with async_session_factory()() as session:
            user = await self.authenticate(session)
            if user is None:
                return False
            conversation = await session.get(Conversation, self.conversation_id)
            if conversation is None or conversation.user_id != user.id:
                await self.send(error_payload("not_found", "Conversation not found."))
                await self.close(CLOSE_NOT_FOUND)
                return False
        return True

    async def serve(self) -> None:
        async with anyio.create_task_group() as tasks:
            while not self.closed:
                frame = await self.websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                message = await self.read(frame)
                if message is not None:
                    await self.handle(message, tasks)
            # Ends the relay only: a generation runs on in its worker and can be resumed.
            tasks.cancel_scope.cancel()

    async def read(self, frame: ASGIMessage) -> SocketChat | SocketCancel | None:
        """The frame's message, or None once the client was told why it was refused."""
        text = frame.get("text")
        if text is None:
            refusal = issue(
                _MESSAGE_LOC, "Binary frames are not read: send JSON as text.", "binary_frame"
            )
            await self.refuse([refusal])
            return None
        # surrogatepass: this only measures (the server decoded the frame as UTF-8).
        if len(text.encode("utf-8", "surrogatepass")) > settings.max_body_bytes:
            await self.send(
                error_payload(
                    "payload_too_large",
                    f"A message may hold at most {settings.max_body_bytes} bytes.",
                )
            )
            return None
        try:
            return _SOCKET_MESSAGE.validate_python(parse_json(text, _MESSAGE_LOC))
        except InputRejected as rejected:
            await self.refuse(rejected.issues)
        except ValidationError as exc:
            errors = [{**error, "loc": (*_MESSAGE_LOC, *error["loc"])} for error in exc.errors()]
            await self.refuse(sanitize_issues(errors))
        return None

    async def refuse(self, issues: list[dict[str, Any]]) -> None:
        message = issues[0]["msg"] if issues else "The message is not valid."
        await self.send({**error_payload("validation_error", message), "detail": issues})

    async def relay(self, started: StartedGeneration) -> None:
        try:
            async for event in started.events():
                await self.send(event_payload(event))
                if event.event in TERMINAL_EVENTS:
                    break
        finally:
            self.current = None

    async def handle(self, message: SocketChat | SocketCancel, tasks: TaskGroup) -> None:
        async with async_session_factory()() as session:
            user = await self.authenticate(session)
            if user is None:
                return
            conversation = await session.get(Conversation, self.conversation_id)
            if conversation is None:
                await self.send(error_payload("not_found", "Conversation not found."))
                return
            if isinstance(message, SocketCancel):
                if self.current is not None:
                    generation = await session.get(Generation, self.current)
                    if generation is not None:
                        await cancel_generation(session, redis_client(), generation)
                return
            if self.current is not None:
                await self.send(error_payload("busy", "A reply is still being generated."))
                return
            try:
                started = await start_turn(session, redis_client(), user, conversation, message)
            except AppError as exc:
                await self.send(error_payload(exc.code, exc.detail))
                return
        self.current = started.generation_id
        tasks.start_soon(self.relay, started)


def _socket_credentials(websocket: WebSocket, query_token: str) -> tuple[str, str | None]:
    """The access token, and the subprotocol to accept: a browser fails the handshake
    unless the answer names a subprotocol it offered."""
    offered: list[str] = websocket.scope.get("subprotocols") or []
    subprotocol = BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in offered else None
    scheme, _, credentials = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), subprotocol
    if subprotocol is not None:
        after = offered.index(BEARER_SUBPROTOCOL) + 1
        if after < len(offered):
            return offered[after], subprotocol
    return query_token, subprotocol


@router.websocket("/{conversation_id}/ws")
async def chat_socket(websocket: WebSocket, conversation_id: uuid.UUID, token: str = "") -> None:
    """Chat over one socket; API.md ("Conversations and chat") has the protocol.

    The access token comes from, in this order: an `Authorization: Bearer` header
    (non-browser clients), the subprotocols `bearer, <token>` (browsers, which cannot
    set headers; the answer selects `bearer`), or `?token=`. A bad token, at connect
    or at any later message (expired, logged out, password changed elsewhere), is an
    `error` event then close 4401; another user's conversation is `not_found` and 4404.

    The client sends `{"type": "chat", "content", "model"?, "reasoning_effort"?,
    "attachments"?}` (the HTTP turn's fields and
    limits) or `{"type": "cancel"}`, one JSON document per text frame; the server sends
    the stream events as JSON objects with a `type`. A frame that is refused (binary,
    not JSON, against the input rules, not one of those messages) is answered with
    `{"type": "error", "code": "validation_error", "message", "detail"}`, `detail`
    listing FastAPI-style items (`loc` starting with "message"); a frame over
    `MAX_BODY_BYTES` with `payload_too_large`. Either way the socket stays open.
    """
    token, subprotocol = _socket_credentials(websocket, token)
    await websocket.accept(subprotocol=subprotocol)
    socket = _Socket(websocket, conversation_id, token)
    try:
        if await socket.admit():
            await socket.serve()
    except* WebSocketDisconnect:
        # The client left; what it started runs on and can be resumed.
        pass
