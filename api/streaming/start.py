"""Starting, awaiting and cancelling generations from the API side.

Every generation starts through `start_generation` (a conversation turn: SSE,
WebSocket, non-streaming) or `start_completion` (stateless: the OpenAI-compatible
routes). Both begin with core/gate.py's one script (quota and rate limits, then
streaming capacity) before anything is written. A conversation turn then writes
the user message and the `generations` row, commits, opens the stream with its
`start` event and queues the worker task; a completion writes nothing to
PostgreSQL (the worker inserts its row) and, when the broker shares the Redis
db, is admitted, opened and queued in that one script. Either way the stream opens
through the one Lua of core/streams.py (`Opening`, `OPEN_LUA`): inside the admission
script for a completion, in a script of its own after the commit for a turn.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError
from sqlalchemy import CTE, Uuid, delete, func, insert, literal, select, true, update
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from api.deps import fetch_owned
from api.streaming.enqueue import TaskMessage, push, task_message
from api.streaming.hub import WAKE_TTL_SECONDS, Subscription, stream_hub
from api.streaming.relay import StreamEvent, relay_events
from core.admission import release, release_in
from core.attachments import attachment_store
from core.chat import CUSTOM_PROVIDER, Route, default_model, require_vision, route_for_model
from core.errors import AppError, NotFound, Unavailable
from core.gate import admit
from core.lifecycle import CANCEL, GenerationStatus, MessageStatus
from core.quota import (
    QuotaSubject,
    durable_used,
    ensure_period,
    refund_in,
    subject_for_user,
)
from core.redis import broker_shares_redis
from core.streams import (
    CANCEL_FLAG_TTL_SECONDS,
    CANCELLED,
    DONE,
    ERROR,
    OPEN_SCRIPT,
    OPEN_SHA,
    START,
    TERMINAL_SCRIPT,
    Opening,
    cancel_key,
    encode,
    stream_key,
    terminal_script_args,
)
from models import (
    Attachment,
    Conversation,
    Generation,
    Message,
    MessageAttachment,
    ModelConfig,
    User,
    UserAIConfig,
)

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
    # The relay's reads of the stream, registered before its start (api/streaming/hub.py).
    subscription: Subscription | None = None

    def events(self) -> AsyncIterator[StreamEvent]:
        return relay_events(str(self.generation_id), subscription=self.subscription)


async def owned_model_config(
    session: AsyncSession, user: User, config_id: uuid.UUID
) -> ModelConfig:
    return await fetch_owned(session, ModelConfig, config_id, user, "Model config")


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
    conversation: Conversation,
    content: str,
    reasoning_effort: str | None = None,
    attachments: Sequence[uuid.UUID] = (),
) -> StartedGeneration:
    """A conversation turn: admit it, store the user message and the `generations`
    row, commit, then open the stream and queue the task with the generation id.
    `reasoning_effort`: the turn's own, kept in the row's `request` for the worker
    (which falls back on the user's ai-config). `attachments`: the user's own images
    (another's or a missing one is 404), for a model with vision (else 400)."""
    images = list(dict.fromkeys(attachments))
    if images:
        require_vision(route)
        if len(await attachment_store.owned(session, user.id, images)) != len(images):
            raise NotFound("Attachment not found.")
    await ensure_period(session, user)
    caller = subject_for_user(user)
    generation_id = uuid.uuid4()
    grant = await admit(redis, caller, generation_id, lambda: durable_used(session, caller))
    subscription = stream_hub().subscribe(stream_key(str(generation_id)), "0-0")
    try:
        user_message_id = await _store_turn(
            session, generation_id, user, route, conversation, content, reasoning_effort, images
        )
        await session.commit()
        started = StartedGeneration(
            generation_id, conversation.id, user_message_id, grant.headers, subscription
        )
        try:
            await _open(redis, started, task_message(CHAT_TASK, (str(generation_id),)))
        except (RedisError, OSError) as exc:
            # Nothing half-written: without a queued task the rows would wait forever.
            await _forget(session, started)
            raise Unavailable("The queue is unavailable; try again shortly.") from exc
    except BaseException:
        # PostgreSQL or Redis failed: no worker will ever release or charge it.
        stream_hub().unsubscribe(subscription)
        await _give_back(redis, caller, generation_id)
        raise
    return started


async def _store_turn(
    session: AsyncSession,
    generation_id: uuid.UUID,
    user: User,
    route: Route,
    conversation: Conversation,
    content: str,
    reasoning_effort: str | None = None,
    images: Sequence[uuid.UUID] = (),
) -> int:
    """The user message, the queued `generations` row that names it, its images' links and
    the conversation's new `updated_at`, in one statement of data-modifying CTEs: one
    round trip where the ORM's flush took three, each on the way to the first token. The
    message's id."""
    now = datetime.now(UTC)
    message = (
        insert(Message)
        .values(
            conversation_id=conversation.id,
            role="user",
            content=content,
            status=MessageStatus.COMPLETE,
            created_at=now,
        )
        .returning(Message.id)
        .cte("user_message")
    )
    row: dict[Any, object] = {
        Generation.id: generation_id,
        Generation.conversation_id: conversation.id,
        Generation.user_id: user.id,
        Generation.model_config_id: route.model_config_id,
        Generation.kind: "chat",
        Generation.provider: route.provider,
        Generation.model: route.model,
        Generation.status: GenerationStatus.QUEUED,
        Generation.queued_at: now,
    }
    if reasoning_effort is not None:
        row[Generation.request] = {"reasoning_effort": reasoning_effort}
    generation = (
        insert(Generation)
        .from_select(
            [column.key for column in row] + ["user_message_id"],
            select(*(literal(value, column.type) for column, value in row.items()), message.c.id),
            # The columns left out take their server defaults: Python-side ones would
            # need bound parameters of their own inside the CTE, which SQLAlchemy refuses.
            include_defaults=False,
        )
        .cte("generation")
    )
    touched = (
        update(Conversation)
        .where(Conversation.id == conversation.id)
        .values(updated_at=now)
        .cte("touched")
    )
    ctes = [generation, touched]
    if images:
        ctes.append(_image_links(message, user, images))
    message_id = await session.scalar(select(message.c.id).add_cte(*ctes))
    # Already stored: the session must not write it again.
    set_committed_value(conversation, "updated_at", now)
    assert message_id is not None
    return message_id


def _image_links(message: CTE, user: User, images: Sequence[uuid.UUID]) -> CTE:
    """The message's images in their order; joined on their owner again, so an image
    deleted since the check is left out rather than failing the turn."""
    given = (
        func.unnest(array(images, type_=Uuid()))
        .table_valued("attachment_id", with_ordinality="position")
        .render_derived(name="given")
    )
    return (
        insert(MessageAttachment)
        .from_select(
            ["message_id", "attachment_id", "position"],
            select(message.c.id, Attachment.id, given.c.position)
            .select_from(message)
            .join(given, true())
            .join(
                Attachment,
                (Attachment.id == given.c.attachment_id) & (Attachment.user_id == user.id),
            ),
        )
        .cte("image_links")
    )


async def start_completion(
    session: AsyncSession,
    redis: aioredis.Redis,
    *,
    caller: QuotaSubject,
    route: Route,
    request: dict[str, Any],
    kind: str,
) -> StartedGeneration:
    """A stateless completion (`request` = {"messages", ...}): no PostgreSQL here (the
    session is used only if Redis lost the quota counter). The worker inserts the
    `generations` row from the task message; admitting, opening the stream and queueing
    the task are one round trip when the broker shares the Redis db."""
    generation_id = uuid.uuid4()
    gen_id = str(generation_id)
    spec = {
        "user_id": str(caller.user_id),
        "api_key_id": str(caller.api_key_id) if caller.api_key_id else None,
        "kind": kind,
        "provider": route.provider,
        "model": route.model,
        "request": request,
        "queued_at": datetime.now(UTC).isoformat(),
    }
    # Worker logs name the generation, never the conversation it carries.
    message = task_message(CHAT_TASK, (gen_id, spec), argsrepr=repr((gen_id,)))
    hub = stream_hub()
    subscription = hub.subscribe(stream_key(gen_id), "0-0")
    started = StartedGeneration(generation_id, None, None, subscription=subscription)

    async def load_used() -> int:
        return await durable_used(session, caller)

    opening = _opening(started, message)
    try:
        grant = await admit(redis, caller, generation_id, load_used, opening)
        if not opening.queue:
            try:
                await push(message)
            except BaseException as exc:
                await _give_back(redis, caller, generation_id)
                if isinstance(exc, RedisError | OSError):
                    raise Unavailable("The queue is unavailable; try again shortly.") from exc
                raise
    except BaseException:
        hub.unsubscribe(subscription)
        raise
    return replace(started, headers=grant.headers)


def _start_data(started: StartedGeneration) -> dict[str, Any]:
    return {
        "generation_id": str(started.generation_id),
        "conversation_id": str(started.conversation_id) if started.conversation_id else None,
        "user_message_id": started.user_message_id,
    }


def _opening(started: StartedGeneration, message: TaskMessage) -> Opening:
    """The stream's `start` entry, the task (when the broker is this Redis db) and the
    wake-up of this process' stream reader, opened in one step."""
    fields = encode(START, _start_data(started))
    return Opening(
        stream_key=stream_key(str(started.generation_id)),
        event=fields["event"],
        data=fields["data"],
        stream_ttl_seconds=UNSTARTED_STREAM_TTL_SECONDS,
        queue=message.queue if broker_shares_redis() else "",
        task_message=message.payload,
        wake_key=stream_hub().wake_key,
        wake_ttl_seconds=WAKE_TTL_SECONDS,
    )


async def _open(redis: aioredis.Redis, started: StartedGeneration, message: TaskMessage) -> None:
    """Open the stream on its own, in one round trip; the task goes to the broker after
    when the broker is another Redis."""
    opening = _opening(started, message)
    keys, args = opening.keys(), opening.args()
    try:
        await redis.evalsha(OPEN_SHA, len(keys), *keys, *args)
    except NoScriptError:
        await redis.eval(OPEN_SCRIPT, len(keys), *keys, *args)
    if not opening.queue:
        await push(message)


async def _give_back(
    redis: aioredis.Redis, subject: QuotaSubject, generation_id: uuid.UUID
) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        release_in(pipe, subject.user_id, str(generation_id))
        refund_in(pipe, subject, str(generation_id))
        await pipe.execute()


async def _forget(session: AsyncSession, started: StartedGeneration) -> None:
    await session.execute(delete(Generation).where(Generation.id == started.generation_id))
    if started.user_message_id is not None:
        await session.execute(delete(Message).where(Message.id == started.user_message_id))
    await session.commit()


async def wait_for_reply(started: StartedGeneration) -> dict[str, Any]:
    """The `done` event's data; an `error` or `cancelled` end raises, its answer with the
    start's quota headers as a success has them."""
    try:
        async for event in started.events():
            if event.event == DONE:
                return event.data
            if event.event == ERROR:
                code = event.data.get("code", "upstream_error")
                raise AppError(
                    event.data.get("message", "The generation failed."),
                    code=code,
                    status_code=502,
                )
            if event.event == CANCELLED:
                raise AppError("The generation was cancelled.", code="cancelled", status_code=409)
        raise AppError(
            "The generation ended without a result.", code="upstream_error", status_code=502
        )
    except AppError as exc:
        exc.headers = {**started.headers, **exc.headers}
        raise


async def cancel_generation(
    session: AsyncSession, redis: aioredis.Redis, generation: Generation
) -> None:
    """Raise the cancel flag for the worker; a generation not yet claimed ends here."""
    gen_id = str(generation.id)
    await redis.set(cancel_key(gen_id), "1", ex=CANCEL_FLAG_TTL_SECONDS)
    # A running one is the worker's to end: it holds the reply produced so far.
    unclaimed = CANCEL.from_(GenerationStatus.QUEUED)
    ended = await session.scalar(
        update(Generation)
        .where(Generation.id == generation.id, unclaimed.where(Generation.status))
        .values(status=unclaimed.target, finished_at=datetime.now(UTC))
        .returning(Generation.id)
    )
    await session.commit()
    if ended is not None:
        keys, args = terminal_script_args(gen_id, CANCELLED, {"message": None, "usage": None})
        await redis.eval(TERMINAL_SCRIPT, len(keys), *keys, *args)
        await release(redis, generation.user_id, gen_id)
