"""Conversations CRUD and chat: non-streaming, SSE and WebSocket."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect, status
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import delete, func, select

from api.deps import (
    CurrentUser,
    OwnedConversation,
    RedisDep,
    SessionDep,
    authenticate_access_token,
)
from api.generations import (
    StartedGeneration,
    cancel_generation,
    owned_model_config,
    resolve_route,
    start_generation,
    wait_for_reply,
)
from api.relay import StreamEvent, relay_events
from api.schemas.conversations import (
    ChatAnswer,
    ChatRequest,
    ConversationCreate,
    ConversationDetail,
    ConversationOut,
    ConversationPage,
    ConversationUpdate,
)
from core.chat import route_for_model
from core.db import async_session_factory
from core.errors import AppError
from core.redis import redis_client
from core.streams import TERMINAL_EVENTS
from models import Conversation, Generation, Message, User

PG_BIGINT_MAX = 2**63 - 1

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}
}


async def sse_body(events: AsyncIterator[StreamEvent]) -> AsyncIterator[str]:
    async for event in events:
        yield event.sse()


def sse_response(generation_id: uuid.UUID, last_event_id: str | None = None) -> StreamingResponse:
    return StreamingResponse(
        sse_body(relay_events(str(generation_id), last_event_id)),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


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
    query = select(Message).where(Message.conversation_id == conversation.id)
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
    # Messages and generations go with it (ON DELETE CASCADE in the schema).
    await session.execute(delete(Conversation).where(Conversation.id == conversation.id))
    await session.commit()


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
    route = await resolve_route(session, user, body.model, conversation)
    started = await start_generation(
        session, redis, user=user, route=route, conversation=conversation, content=body.content
    )
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
    """Events: `start`, `delta`..., then `done`, `error` or `cancelled`. A disconnect
    does not stop the generation; resume with `GET /v1/generations/{id}/stream`."""
    route = await resolve_route(session, user, body.model, conversation)
    started = await start_generation(
        session, redis, user=user, route=route, conversation=conversation, content=body.content
    )
    return StreamingResponse(
        sse_body(started.events()),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **started.headers},
    )


class _Socket:
    """One chat WebSocket: sends are serialised, one generation runs at a time."""

    def __init__(self, websocket: WebSocket, conversation_id: uuid.UUID, user_id: uuid.UUID):
        self.websocket = websocket
        self.conversation_id = conversation_id
        self.user_id = user_id
        self.lock = anyio.Lock()
        self.current: uuid.UUID | None = None

    async def send(self, payload: dict[str, Any]) -> None:
        async with self.lock:
            await self.websocket.send_json(payload)

    async def relay(self, started: StartedGeneration) -> None:
        try:
            async for event in started.events():
                if event.is_ping:
                    await self.send({"type": "ping"})
                    continue
                await self.send({"type": event.event, "id": event.id, **event.data})
                if event.event in TERMINAL_EVENTS:
                    break
        finally:
            self.current = None

    async def handle(self, message: dict[str, Any], tasks: anyio.abc.TaskGroup) -> None:
        kind = message.get("type")
        async with async_session_factory()() as session:
            conversation = await session.get(Conversation, self.conversation_id)
            if conversation is None:
                await self.send(_ws_error("not_found", "Conversation not found."))
                return
            if kind == "cancel":
                if self.current is not None:
                    generation = await session.get(Generation, self.current)
                    if generation is not None:
                        await cancel_generation(session, redis_client(), generation)
                return
            content = message.get("content")
            if kind != "chat" or not isinstance(content, str) or not content.strip():
                await self.send(
                    _ws_error("validation_error", 'Send {"type": "chat", "content": "..."}.')
                )
                return
            if self.current is not None:
                await self.send(_ws_error("busy", "A reply is still being generated."))
                return
            user = await session.get(User, self.user_id)
            model = message.get("model") if isinstance(message.get("model"), str) else None
            try:
                route = await resolve_route(session, user, model, conversation)
                started = await start_generation(
                    session,
                    redis_client(),
                    user=user,
                    route=route,
                    conversation=conversation,
                    content=content,
                )
            except AppError as exc:
                await self.send(_ws_error(exc.code, exc.detail))
                return
        self.current = started.generation_id
        tasks.start_soon(self.relay, started)


def _ws_error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


@router.websocket("/{conversation_id}/ws")
async def chat_socket(websocket: WebSocket, conversation_id: uuid.UUID, token: str = "") -> None:
    """Client sends `{"type": "chat", "content"}` or `{"type": "cancel"}`; the server
    sends the stream events as JSON objects with a `type`."""
    await websocket.accept()
    async with async_session_factory()() as session:
        try:
            user, _ = await authenticate_access_token(token, session, redis_client())
        except AppError as exc:
            await websocket.send_json(_ws_error(exc.code, exc.detail))
            await websocket.close(code=4401)
            return
        conversation = await session.get(Conversation, conversation_id)
        if conversation is None or conversation.user_id != user.id:
            await websocket.send_json(_ws_error("not_found", "Conversation not found."))
            await websocket.close(code=4404)
            return
    socket = _Socket(websocket, conversation_id, user.id)
    try:
        async with anyio.create_task_group() as tasks:
            while True:
                try:
                    message = json.loads(await websocket.receive_text())
                except json.JSONDecodeError:
                    message = None
                await socket.handle(message if isinstance(message, dict) else {}, tasks)
    except* WebSocketDisconnect:
        # A disconnect is not a cancel: the generation runs on and can be resumed.
        pass
