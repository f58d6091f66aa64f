"""Starting, awaiting and cancelling generations from the API side.

`start_generation` is the single entry point every chat path (SSE, WebSocket,
non-streaming, the OpenAI-compatible route) goes through: quota reservation
belongs at its top. It writes the user message and the `generations` row,
commits, opens the stream with its `start` event, then enqueues the worker
task with the generation id only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.enqueue import enqueue
from api.relay import relay_events
from core.admission import release, release_in
from core.chat import CUSTOM_PROVIDER, Route, default_model, route_for_model
from core.errors import AppError, NotFound, Unavailable
from core.gate import admit
from core.quota import (
    Grant,
    QuotaSubject,
    durable_used,
    ensure_period,
    refund_in,
    subject_for_user,
)
from core.streams import (
    CANCEL_FLAG_TTL_SECONDS,
    CANCELLED,
    DONE,
    ERROR,
    START,
    TERMINAL_SCRIPT,
    cancel_key,
    encode,
    stream_key,
    terminal_script_args,
)
from models import Conversation, Generation, Message, ModelConfig, User, UserAIConfig

CHAT_TASK = "workers.chat.generate"
# A stream whose worker never starts still disappears eventually.
UNSTARTED_STREAM_TTL_SECONDS = 2 * 3600


@dataclass(frozen=True)
class StartedGeneration:
    generation_id: uuid.UUID
    conversation_id: uuid.UUID | None
    user_message_id: int | None
    # X-RateLimit-* of the quota reservation, for the answer's headers.
    headers: dict[str, str] = field(default_factory=dict)


async def owned_model_config(
    session: AsyncSession, user: User, config_id: uuid.UUID
) -> ModelConfig:
    config = await session.get(ModelConfig, config_id)
    if config is None or config.user_id != user.id:
        raise NotFound("Model config not found.")
    return config


async def resolve_route(
    session: AsyncSession,
    user: User,
    requested_model: str | None,
    conversation: Conversation | None = None,
) -> Route:
    """The model asked for, else the conversation's choice, else the user's default,
    else the plan's default. A user's own model config needs no plan."""
    if requested_model:
        return route_for_model(user.plan, requested_model)
    if conversation is not None and conversation.model_config_id:
        config = await owned_model_config(session, user, conversation.model_config_id)
        return Route(CUSTOM_PROVIDER, config.model, config.id)
    if conversation is not None and conversation.model:
        return route_for_model(user.plan, conversation.model)
    ai_config = await session.get(UserAIConfig, user.id)
    if ai_config is not None and ai_config.model_config_id:
        config = await owned_model_config(session, user, ai_config.model_config_id)
        return Route(CUSTOM_PROVIDER, config.model, config.id)
    if ai_config is not None and ai_config.default_model:
        return route_for_model(user.plan, ai_config.default_model)
    return route_for_model(user.plan, default_model(user.plan))


async def start_generation(
    session: AsyncSession,
    redis: aioredis.Redis,
    *,
    user: User,
    route: Route,
    conversation: Conversation | None = None,
    content: str | None = None,
    request: dict[str, Any] | None = None,
    api_key_id: uuid.UUID | None = None,
    kind: str = "chat",
    caller: QuotaSubject | None = None,
) -> StartedGeneration:
    """Persist and enqueue one generation: in a conversation (`conversation` and
    `content`), or stateless (`request` = {"messages", "temperature"?, "max_tokens"?}).

    Reserves one request of `caller`'s quota (default: the user's own) and a
    streaming slot in one script (core/gate.py: 402/429 for the contractual
    limits first, then 503/429 past capacity) before anything is written; the
    generation id is the reservation's id, so a worker can refund exactly it."""
    if caller is None:
        await ensure_period(session, user)
        caller = subject_for_user(user)
    generation_id = uuid.uuid4()
    grant = await admit(redis, caller, generation_id, lambda: durable_used(session, caller))
    try:
        return await _write_and_enqueue(
            session,
            redis,
            generation_id,
            grant,
            user=user,
            route=route,
            conversation=conversation,
            content=content,
            request=request,
            api_key_id=api_key_id,
            kind=kind,
        )
    except BaseException:
        # PostgreSQL or Redis failed: no worker will ever release or charge it.
        await _give_back(redis, caller, user.id, str(generation_id))
        raise


async def _give_back(
    redis: aioredis.Redis, subject: QuotaSubject, user_id: uuid.UUID, generation_id: str
) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        release_in(pipe, user_id, generation_id)
        refund_in(pipe, subject, generation_id)
        await pipe.execute()


async def _write_and_enqueue(
    session: AsyncSession,
    redis: aioredis.Redis,
    generation_id: uuid.UUID,
    grant: Grant,
    *,
    user: User,
    route: Route,
    conversation: Conversation | None,
    content: str | None,
    request: dict[str, Any] | None,
    api_key_id: uuid.UUID | None,
    kind: str,
) -> StartedGeneration:
    now = datetime.now(UTC)
    user_message: Message | None = None
    if conversation is not None:
        user_message = Message(
            conversation_id=conversation.id, role="user", content=content or "", status="complete"
        )
        session.add(user_message)
        conversation.updated_at = now
        await session.flush()
    generation = Generation(
        id=generation_id,
        conversation_id=conversation.id if conversation else None,
        user_id=user.id,
        api_key_id=api_key_id,
        model_config_id=route.model_config_id,
        user_message_id=user_message.id if user_message else None,
        kind=kind,
        provider=route.provider,
        model=route.model,
        status="queued",
        request=request,
        queued_at=now,
    )
    session.add(generation)
    await session.commit()
    started = StartedGeneration(
        generation.id,
        generation.conversation_id,
        user_message.id if user_message else None,
        grant.headers,
    )
    gen_id = str(generation.id)
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                stream_key(gen_id),
                encode(
                    START,
                    {
                        "generation_id": gen_id,
                        "conversation_id": str(started.conversation_id)
                        if started.conversation_id
                        else None,
                        "user_message_id": started.user_message_id,
                    },
                ),
            )
            pipe.expire(stream_key(gen_id), UNSTARTED_STREAM_TTL_SECONDS)
            await pipe.execute()
        await enqueue(CHAT_TASK, gen_id)
    except (RedisError, BrokerError, OSError) as exc:
        # Nothing half-written: without a queued task the rows would wait forever.
        await _forget(session, started)
        raise Unavailable("The queue is unavailable; try again shortly.") from exc
    return started


async def _forget(session: AsyncSession, started: StartedGeneration) -> None:
    await session.execute(delete(Generation).where(Generation.id == started.generation_id))
    if started.user_message_id is not None:
        await session.execute(delete(Message).where(Message.id == started.user_message_id))
    await session.commit()


async def wait_for_reply(generation_id: uuid.UUID) -> dict[str, Any]:
    """The `done` event's data; an `error` or `cancelled` end raises."""
    async for event in relay_events(str(generation_id)):
        if event.event == DONE:
            return event.data
        if event.event == ERROR:
            code = event.data.get("code", "upstream_error")
            raise AppError(
                event.data.get("message", "The generation failed."), code=code, status_code=502
            )
        if event.event == CANCELLED:
            raise AppError("The generation was cancelled.", code="cancelled", status_code=409)
    raise AppError("The generation ended without a result.", code="upstream_error", status_code=502)


async def cancel_generation(
    session: AsyncSession, redis: aioredis.Redis, generation: Generation
) -> None:
    """Raise the cancel flag for the worker; a generation not yet claimed ends here."""
    gen_id = str(generation.id)
    await redis.set(cancel_key(gen_id), "1", ex=CANCEL_FLAG_TTL_SECONDS)
    ended = await session.scalar(
        update(Generation)
        .where(Generation.id == generation.id, Generation.status == "queued")
        .values(status="cancelled", finished_at=datetime.now(UTC))
        .returning(Generation.id)
    )
    await session.commit()
    if ended is not None:
        keys, args = terminal_script_args(gen_id, CANCELLED, {"message": None, "usage": None})
        await redis.eval(TERMINAL_SCRIPT, len(keys), *keys, *args)
        await release(redis, generation.user_id, gen_id)
