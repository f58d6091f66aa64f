"""`workers.chat.generate`: run one generation from claim to terminal event.

Delivery choice: `acks_late=True` with `reject_on_worker_lost=True`. A task is
acknowledged only after it ran, so a worker lost between receiving and
claiming it does not lose the chat; a redelivered task is harmless because the
claim is atomic (a conversation turn's `UPDATE ... WHERE status = 'queued'` in
PostgreSQL, a stateless completion's `SET NX` in Redis): only one delivery ever
reaches the provider, and any later one finds the generation claimed and stops.
A worker lost after the claim is detected through its heartbeat key, which
names a worker process whose alive key is gone (relay, sweep), and is not
retried: the client has already seen part of the reply.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from celery.utils.log import get_task_logger
from redis import Redis
from redis.client import Pipeline
from sqlalchemy import select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session

from core.admission import release_in, release_sync
from core.celery_app import celery_app
from core.chat import (
    CUSTOM_PROVIDER,
    PLUGIN_PROVIDER,
    context_window,
    cost_of,
    estimate_tokens,
    message_payload,
    trim_history,
    usage_payload,
)
from core.config import settings
from core.crypto import decrypt_secret
from core.db import worker_session
from core.errors import AppError
from core.input_rules import storable_text
from core.lifecycle import (
    CLAIM,
    FAIL,
    HISTORY_MESSAGE_STATUSES,
    MESSAGE_STATUS_AT_END,
    WORKER_ENDS,
    GenerationStatus,
)
from core.quota import refund_generation
from core.redis import as_fields, sync_redis
from core.streams import (
    CANCELLED,
    CLAIM_SCRIPT,
    DELTA,
    DELTA_FLUSH_CHARS,
    DELTA_FLUSH_SECONDS,
    DONE,
    ERROR,
    TERMINAL_SCRIPT,
    WORKER_ALIVE_TTL_SECONDS,
    cancel_key,
    claim_key,
    encode,
    heartbeat_key,
    stream_key,
    terminal_script_args,
    worker_alive_key,
)
from models import Conversation, Generation, Message, ModelConfig, UsageRecord, UserAIConfig
from workers.providers import platform_endpoint, provider_for
from workers.providers.base import Finish, ProviderCall, ProviderError, Usage, stream_with_retry
from workers.providers.tool_calls import ToolCallDelta, assemble, merge_fragment
from workers.tasks.plugin import chat_endpoint

log = get_task_logger(__name__)

# Where `python -m workers.liveness` resolves.
ROOT = Path(__file__).resolve().parents[2]
NEVER_STARTED = ("worker_lost", "No worker started this generation in time; try again.")
DISCARDED = {"code": "not_found", "message": "The account or API key of this completion is gone."}
STORAGE_FAILED = ("storage_failed", "The database refused to store this generation.")


class WorkerLiveness:
    """This process' id in the heartbeat keys of the generations it runs, and the
    companion process (workers/liveness.py) that keeps the id's alive key fresh
    from outside this process' GIL."""

    def __init__(self) -> None:
        self.worker_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._companion: subprocess.Popen | None = None

    def _ensure_companion(self) -> None:
        with self._lock:
            if self._companion is not None and self._companion.poll() is None:
                return
            # Fresh at once, before the companion's interpreter has started.
            sync_redis().set(worker_alive_key(self.worker_id), "1", ex=WORKER_ALIVE_TTL_SECONDS)
            self._companion = subprocess.Popen(
                [sys.executable, "-m", "workers.liveness", self.worker_id],
                stdin=subprocess.PIPE,
                cwd=ROOT,
            )
            assert self._companion.stdin is not None
            # The URL through the pipe, not argv: it may hold a password. The pipe then
            # stays open; its end of file is what tells the companion this process died.
            self._companion.stdin.write(settings.require_redis_url().encode() + b"\n")
            self._companion.stdin.flush()

    def add(self, generation_id: str, *, claimed: bool = False) -> bool:
        """Name this process in the generation's heartbeat key. Before the claim only if
        no delivery did (a redelivery that loses the claim must leave the running one's
        key alone); once claimed, always. Whether the key now names this process."""
        self._ensure_companion()
        key = heartbeat_key(generation_id)
        return bool(sync_redis().set(key, self.worker_id, ex=_HEARTBEAT_TTL, nx=not claimed))

    def claim(self, generation_id: str, user_id: uuid.UUID) -> bool:
        """Take a stateless completion for this delivery and name this process in its
        heartbeat key, in one round trip (core/streams.py CLAIM_SCRIPT)."""
        self._ensure_companion()
        keys = (claim_key(generation_id), heartbeat_key(generation_id))
        args = (str(user_id), self.worker_id, _CLAIM_TTL, _HEARTBEAT_TTL)
        return bool(sync_redis().eval(CLAIM_SCRIPT, 2, *keys, *args))

    def remove(self, generation_id: str) -> None:
        sync_redis().delete(heartbeat_key(generation_id))


# Outlives any generation, so a heartbeat key nobody deleted still goes away.
_HEARTBEAT_TTL = settings.generation_timeout_seconds + 60
# Outlives the broker's redelivery of an unacknowledged task, which it must stop.
_CLAIM_TTL = celery_app.conf.broker_transport_options["visibility_timeout"] + 60

liveness = WorkerLiveness()


class Cancelled(Exception):
    """The client cancelled mid-stream; `partial` is what it was sent (and is stored)."""

    def __init__(self, partial: Outcome) -> None:
        super().__init__()
        self.partial = partial


class ReplyFailed(ProviderError):
    """The provider failed during the reply; `partial` is what the client was sent
    before it (and is stored)."""

    def __init__(self, error: ProviderError, partial: Outcome) -> None:
        super().__init__(error.message, retryable=error.retryable)
        self.partial = partial


class Discarded(Exception):
    """A stateless completion whose user or API key was deleted while it ran."""


class Unstorable(Exception):
    """The database refused what a generation would store: the data, not the connection.
    Its message names only the driver's error class, never the refused values."""


@contextmanager
def refusals_as_unstorable() -> Iterator[None]:
    """Raise the database's refusal of the data as Unstorable. A lost connection
    (OperationalError, InterfaceError) passes as is: it is transient, for the broker's
    redelivery and the sweep, and says nothing about the data."""
    try:
        yield
    except (DataError, IntegrityError) as exc:
        raise Unstorable(type(exc.orig).__name__) from exc
    except UnicodeEncodeError as exc:
        # The driver's own refusal of a parameter (a lone surrogate), before any statement.
        raise Unstorable(type(exc).__name__) from exc
    except StatementError as exc:
        if isinstance(exc, DBAPIError):
            raise
        # Not the database's answer: a parameter that SQLAlchemy could not prepare.
        raise Unstorable(type(exc.orig).__name__) from exc


@dataclass
class Outcome:
    text: str
    usage: Usage
    first_token_at: datetime | None
    # Whole tool calls in `message.tool_calls` shape, and the provider's end reason.
    tool_calls: list[dict] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def produced(self) -> bool:
        """Whether the provider generated anything the client received (and is billed for)."""
        return bool(self.text or self.tool_calls)


def _now() -> datetime:
    return datetime.now(UTC)


def publish_terminal(
    generation_id: str, event: str, data: dict, user_id: uuid.UUID | None = None
) -> None:
    """The terminal event; with `user_id`, the streaming slot is released in the same round
    trip, before the event, so a client that reads the end can start its next one at once."""
    keys, args = terminal_script_args(generation_id, event, data)
    pipe = sync_redis().pipeline(transaction=False)
    if user_id is not None:
        release_in(pipe, user_id, generation_id)
    pipe.eval(TERMINAL_SCRIPT, len(keys), *keys, *args)
    pipe.execute()


def claim(generation_id: uuid.UUID) -> tuple[Generation, ProviderCall | Exception] | None:
    """Take a queued conversation generation, whose row the API wrote, and build its
    provider request in the same transaction: one commit before the provider is called.
    A request that cannot be built (its model config deleted, ...) comes back as the
    error, for the caller to raise once the claim is committed and it can be stored."""
    with worker_session() as session:
        generation = session.scalars(
            update(Generation)
            .where(Generation.id == generation_id, CLAIM.where(Generation.status))
            .values(status=CLAIM.target, started_at=_now(), attempts=Generation.attempts + 1)
            .returning(Generation)
        ).one_or_none()
        if generation is None:
            return None
        try:
            return generation, build_call(session, generation)
        except Exception as exc:  # noqa: BLE001 - raised by `generate`, where it is handled
            return generation, exc


def claim_completion(generation_id: uuid.UUID, spec: dict) -> Generation | None:
    """Take a stateless completion, which the API starts without PostgreSQL: claimed in
    Redis, so no transaction stands before its first token; its row, built here from
    the task message, is stored by `store_completion` once that token is out. A
    redelivered task finds the claim and stops, as `claim` does. One that waited past
    the generation timeout (no worker for that long) is stored failed, never run late."""
    gen_id, user_id = str(generation_id), uuid.UUID(spec["user_id"])
    if not liveness.claim(gen_id, user_id):
        return None
    queued_at = datetime.fromisoformat(spec["queued_at"])
    generation = Generation(
        id=generation_id,
        user_id=user_id,
        api_key_id=uuid.UUID(spec["api_key_id"]) if spec["api_key_id"] else None,
        kind=spec["kind"],
        provider=spec["provider"],
        model=spec["model"],
        request=spec["request"],
        queued_at=queued_at,
        attempts=1,
        # Claimed in Redis above: its row starts where a claim leads.
        status=CLAIM.target,
        started_at=_now(),
    )
    if queued_at >= _now() - timedelta(seconds=settings.generation_timeout_seconds):
        return generation
    generation.status, generation.finished_at = FAIL.target, _now()
    generation.error_code, generation.error = NEVER_STARTED
    data = {"code": NEVER_STARTED[0], "message": NEVER_STARTED[1]}
    try:
        store_completion(generation)
    except Discarded:
        data = DISCARDED
    except Unstorable as exc:
        # Its row is refused, but the client still hears why it never ran.
        log.warning("completion row refused", extra={"generation_id": gen_id, "error": str(exc)})
    publish_terminal(gen_id, ERROR, data, generation.user_id)
    liveness.remove(gen_id)
    return None


def store_completion(generation: Generation) -> None:
    """Insert a claimed stateless completion's row; raises Discarded when its user or key
    is gone (the foreign keys cascade from them), Unstorable when its request is refused."""
    with refusals_as_unstorable():
        try:
            with worker_session() as session:
                session.add(generation)
        except IntegrityError as exc:
            raise Discarded from exc


def build_call(session: Session, generation: Generation) -> ProviderCall:
    """The provider request: trimmed history for a conversation, or the stored request."""
    params = dict(generation.request or {})
    if generation.conversation_id is not None:
        found = session.execute(
            select(Conversation, UserAIConfig)
            .outerjoin(UserAIConfig, UserAIConfig.user_id == generation.user_id)
            .where(Conversation.id == generation.conversation_id)
        ).one_or_none()
        if found is None:
            raise ProviderError("The conversation was deleted.")
        conversation, ai_config = found
        rows = session.scalars(
            select(Message)
            .where(
                Message.conversation_id == conversation.id,
                Message.id <= (generation.user_message_id or 0),
                Message.status.in_(sorted(HISTORY_MESSAGE_STATUSES)),
            )
            .order_by(Message.id)
        ).all()
        history = [{"role": m.role, "content": m.content} for m in rows if m.content]
        system_prompt = conversation.system_prompt or (
            ai_config.system_prompt if ai_config else None
        )
        messages = trim_history(
            system_prompt, history, context_window(generation.model, generation.provider)
        )
        if ai_config and ai_config.temperature is not None:
            params.setdefault("temperature", ai_config.temperature)
    else:
        messages = params.pop("messages")
    if generation.provider == CUSTOM_PROVIDER:
        config = session.get(ModelConfig, generation.model_config_id)
        if config is None:
            raise ProviderError("The model config was deleted.")
        # Decrypted only here, at call time, and never logged.
        base_url, api_key, user_endpoint = (
            config.base_url,
            decrypt_secret(config.api_key_encrypted),
            True,
        )
    elif generation.provider == PLUGIN_PROVIDER:
        base_url, api_key = chat_endpoint(session, generation.user_id)
        user_endpoint = False
    else:
        base_url, api_key = platform_endpoint(generation.provider)
        user_endpoint = False
    return ProviderCall(
        base_url=base_url,
        api_key=api_key,
        model=generation.model,
        messages=messages,
        temperature=params.pop("temperature", None),
        max_tokens=params.pop("max_tokens", None),
        user_endpoint=user_endpoint,
        # The rest of a stateless request (top_p, stop, tools, ...) goes to the provider as is.
        extra=params,
    )


def stream_reply(
    generation: Generation,
    call: ProviderCall,
    after_first_token: Callable[[], None] | None = None,
) -> Outcome:
    """Stream the provider's reply into `gen:{id}`, coalescing deltas; raises Cancelled
    or ReplyFailed, each with the reply so far.
    `after_first_token` runs once the first token is written, off its path to the client.

    Text and tool-call fragments are never pending together (a switch flushes), so
    the stream keeps the provider's order."""
    redis = sync_redis()
    gen_id = str(generation.id)
    key, flag = stream_key(gen_id), cancel_key(gen_id)
    parts: list[str] = []
    pending: list[str] = []
    fragments: list[dict] = []
    pending_tools: list[dict] = []
    usage = Usage()
    finish_reason: str | None = None
    first_token_at: datetime | None = None
    last_flush = 0.0

    def write_pending(target: Redis | Pipeline) -> None:
        if pending:
            target.xadd(key, as_fields(encode(DELTA, {"content": "".join(pending)})))
            pending.clear()
        if pending_tools:
            # `content` stays present so clients that only concatenate text never break.
            delta = {"content": "", "tool_calls": list(pending_tools)}
            target.xadd(key, as_fields(encode(DELTA, delta)))
            pending_tools.clear()

    def flush() -> None:
        nonlocal last_flush
        # The deltas and the cancel-flag check in one round trip.
        pipe = redis.pipeline(transaction=False)
        write_pending(pipe)
        pipe.exists(flag)
        cancelled = pipe.execute()[-1]
        last_flush = time.monotonic()
        if cancelled:
            raise Cancelled(outcome())

    def outcome() -> Outcome:
        return Outcome("".join(parts), usage, first_token_at, assemble(fragments), finish_reason)

    try:
        for item in stream_with_retry(provider_for(generation.provider), call):
            if isinstance(item, Usage):
                usage = item
                continue
            if isinstance(item, Finish):
                finish_reason = item.reason
                continue
            if isinstance(item, ToolCallDelta):
                if pending:
                    flush()
                fragments.append(item.fragment)
                merge_fragment(pending_tools, item.fragment)
            else:
                # Dropped here, so the client is relayed exactly what is stored.
                item = storable_text(item)
                if not item:
                    continue
                if pending_tools:
                    flush()
                parts.append(item)
                pending.append(item)
            if first_token_at is None:
                first_token_at = _now()
                flush()
                if after_first_token is not None:
                    after_first_token()
            elif (
                time.monotonic() - last_flush >= DELTA_FLUSH_SECONDS
                or sum(map(len, pending)) >= DELTA_FLUSH_CHARS
            ):
                flush()
        flush()
    except ProviderError as exc:
        # What was already relayed is also what gets stored: flush the tail first.
        write_pending(redis)
        raise ReplyFailed(exc, outcome()) from exc
    return outcome()


def _final_usage(call: ProviderCall | None, outcome: Outcome) -> tuple[int, int, bool]:
    """The provider's own counts; an estimate (flagged) only where it gave none."""
    prompt, completion = outcome.usage.prompt_tokens, outcome.usage.completion_tokens
    estimated = prompt is None or completion is None
    if prompt is None:
        # Content may be absent (an assistant turn of tool calls) or a list of parts.
        texts = [str(m.get("content") or "") for m in call.messages] if call else []
        prompt = sum(estimate_tokens(text) for text in texts)
    if completion is None:
        generated = outcome.text + "".join(c["function"]["arguments"] for c in outcome.tool_calls)
        completion = estimate_tokens(generated) if generated else 0
    return prompt, completion, estimated


@dataclass
class Finished:
    """What `finish` stored: the terminal event and its data, and whether the conversation
    still has no title (none set by its user, none generated), so a title job is worth
    queueing."""

    event: str
    data: dict
    untitled: bool = False


def finish(
    generation: Generation,
    status: GenerationStatus,
    outcome: Outcome,
    call: ProviderCall | None,
    error: tuple[str, str] | None = None,
) -> Finished | None:
    """Store the reply, usage and final status in one transaction; None if another end
    (the sweep) or a deletion came first. A reply the database refuses (usage no column
    holds, ...) is not stored: the generation then ends failed with `storage_failed`."""
    try:
        with refusals_as_unstorable():
            return _store_end(generation, status, outcome, call, error)
    except Unstorable as exc:
        log.warning(
            "generation end refused",
            extra={"generation_id": str(generation.id), "error": str(exc)},
        )
    # Which part was refused is unknown: nothing of the reply is kept.
    bare = Outcome("", Usage(), outcome.first_token_at)
    return _store_end(generation, GenerationStatus.FAILED, bare, None, STORAGE_FAILED)


def _store_end(
    generation: Generation,
    status: GenerationStatus,
    outcome: Outcome,
    call: ProviderCall | None,
    error: tuple[str, str] | None,
) -> Finished | None:
    prompt, completion, estimated = _final_usage(call, outcome)
    ending = WORKER_ENDS[status]
    with worker_session() as session:
        # Only the status, locked: the row's `request` (a completion's whole prompt) is
        # not read back just to be ended.
        current_status = session.scalar(
            select(Generation.status).where(Generation.id == generation.id).with_for_update()
        )
        if not ending.permits(current_status):
            # Deleted with its conversation, or already ended by the sweep.
            return None
        message = None
        untitled = False
        keep_message = generation.conversation_id is not None and (
            status != GenerationStatus.FAILED or outcome.text
        )
        if keep_message:
            message = Message(
                conversation_id=generation.conversation_id,
                role="assistant",
                content=outcome.text,
                status=MESSAGE_STATUS_AT_END[status],
                model=generation.model,
                prompt_tokens=prompt,
                completion_tokens=completion,
            )
            session.add(message)
            session.flush()
            untitled = bool(
                session.scalar(
                    update(Conversation)
                    .where(Conversation.id == generation.conversation_id)
                    .values(updated_at=_now())
                    .returning(
                        Conversation.title.is_(None) & Conversation.title_generated.is_(False)
                    )
                )
            )
        ended = {
            "status": ending.target,
            "finished_at": _now(),
            "first_token_at": outcome.first_token_at,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "usage_estimated": estimated,
            "assistant_message_id": message.id if message else None,
        }
        if error:
            ended["error_code"], ended["error"] = error
        session.execute(
            update(Generation)
            .where(Generation.id == generation.id, ending.where(Generation.status))
            .values(ended)
        )
        if status == GenerationStatus.DONE or outcome.produced:
            session.add(
                UsageRecord(
                    user_id=generation.user_id,
                    api_key_id=generation.api_key_id,
                    generation_id=generation.id,
                    model=generation.model,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    cost=cost_of(generation.model, prompt, completion),
                )
            )
        session.flush()
        usage = usage_payload(prompt, completion, estimated)
        if status == GenerationStatus.DONE:
            if message is None:
                answer: dict[str, Any] = {
                    "content": outcome.text,
                    "usage": usage,
                    "finish_reason": outcome.finish_reason or "stop",
                }
                if outcome.tool_calls:
                    answer["tool_calls"] = outcome.tool_calls
                return Finished(DONE, answer)
            return Finished(DONE, {"message": message_payload(message), "usage": usage}, untitled)
        if status == GenerationStatus.CANCELLED:
            payload = message_payload(message) if message else None
            return Finished(CANCELLED, {"message": payload, "usage": usage})
        assert error is not None
        return Finished(ERROR, {"code": error[0], "message": error[1]})


@celery_app.task(
    name="workers.chat.generate", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def generate(generation_id: str, spec: dict | None = None) -> None:
    """`spec`: a stateless completion's row (see `claim_completion`); None for a conversation's."""
    # A conversation turn's request is built in its claim's transaction.
    prepared: ProviderCall | Exception | None = None
    if spec is None:
        # Before the claim: a relay must never see a running generation without a heartbeat.
        named = liveness.add(generation_id)
        claimed = claim(uuid.UUID(generation_id))
        generation, prepared = claimed if claimed is not None else (None, None)
        if generation is not None and not named:
            # A delivery lost before its claim left its key, naming a dead worker.
            liveness.add(generation_id, claimed=True)
        elif generation is None and named:
            # Another delivery may be running it: leave its heartbeat key alone.
            liveness.remove(generation_id)
    else:
        generation = claim_completion(uuid.UUID(generation_id), spec)
    if generation is None:
        log.info("generation already claimed or ended", extra={"generation_id": generation_id})
        return
    # A stateless completion's row waits for its first token, or for its end if none comes.
    unstored = [generation] if spec is not None else []

    def store() -> None:
        if unstored:
            store_completion(unstored.pop())

    def discard() -> None:
        publish_terminal(generation_id, ERROR, DISCARDED, generation.user_id)

    def unstorable(exc: Unstorable, produced: bool) -> None:
        """A completion whose row was refused: no row to end, the stream alone tells."""
        log.warning(
            "completion row refused", extra={"generation_id": generation_id, "error": str(exc)}
        )
        if not produced:
            refund_generation(generation.user_id, generation.api_key_id, generation.id)
        data = {"code": STORAGE_FAILED[0], "message": STORAGE_FAILED[1]}
        publish_terminal(generation_id, ERROR, data, generation.user_id)

    def end(
        status: GenerationStatus,
        outcome: Outcome,
        call: ProviderCall | None,
        error: tuple[str, str] | None = None,
    ) -> Finished | None:
        """Store the end; None when nothing was (see `finish`, or a completion whose user
        or key is gone, or whose row is refused, whose stream ends here: this runs inside
        the handlers below, where a Discarded or Unstorable raised would escape them)."""
        try:
            store()
        except Discarded:
            discard()
            return None
        except Unstorable as exc:
            unstorable(exc, outcome.produced)
            return None
        return finish(generation, status, outcome, call, error)

    call: ProviderCall | None = None
    try:
        if isinstance(prepared, Exception):
            raise prepared
        if prepared is None:
            with worker_session() as session:
                prepared = build_call(session, generation)
        call = prepared
        outcome = stream_reply(generation, call, store)
        finished = end(GenerationStatus.DONE, outcome, call)
        if finished is not None:
            publish_terminal(generation_id, finished.event, finished.data, generation.user_id)
            if finished.untitled:
                celery_app.send_task(
                    "workers.titles.generate", args=(str(generation.conversation_id),)
                )
    except Cancelled as exc:
        finished = end(GenerationStatus.CANCELLED, exc.partial, call)
        if finished is not None:
            publish_terminal(generation_id, finished.event, finished.data, generation.user_id)
    except Discarded:
        # Its row could not be stored at the first token.
        discard()
    except Unstorable as exc:
        # Its row was refused at the first token, which the client already has.
        unstorable(exc, produced=True)
    except (ProviderError, AppError) as exc:
        partial = exc.partial if isinstance(exc, ReplyFailed) else Outcome("", Usage(), None)
        # A provider's own error text is stored too.
        message = storable_text(exc.message if isinstance(exc, ProviderError) else exc.detail)
        log.warning("generation failed", extra={"generation_id": generation_id, "error": message})
        finished = end(GenerationStatus.FAILED, partial, call, ("upstream_error", message))
        if finished is not None:
            # Refunded before the client hears of the failure, so its next call sees the count.
            if not partial.produced:
                refund_generation(generation.user_id, generation.api_key_id, generation.id)
            publish_terminal(generation_id, finished.event, finished.data, generation.user_id)
    except Exception:
        log.exception("generation crashed", extra={"generation_id": generation_id})
        error = ("internal_error", "The generation failed unexpectedly.")
        finished = end(GenerationStatus.FAILED, Outcome("", Usage(), None), None, error)
        if finished is not None:
            refund_generation(generation.user_id, generation.api_key_id, generation.id)
            publish_terminal(generation_id, finished.event, finished.data, generation.user_id)
    finally:
        liveness.remove(generation_id)
        # Also when no terminal event came from here (deleted, or already swept).
        release_sync(generation.user_id, generation_id)
