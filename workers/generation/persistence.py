"""A generation's rows: a stateless completion's row, and the end of any generation
(reply message, usage record, final status through core/lifecycle.py) in one
transaction, with the terminal event it calls for."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery.utils.log import get_task_logger
from sqlalchemy import select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from core.chat import cost_of, estimate_tokens, message_payload, usage_payload
from core.db import worker_session
from core.lifecycle import MESSAGE_STATUS_AT_END, WORKER_ENDS, GenerationStatus
from core.streams import CANCELLED, DONE, ERROR
from models import Conversation, Generation, Message, UsageRecord
from workers.generation.outcome import Outcome
from workers.generation.thinking import KeptBlocks
from workers.providers.base import ProviderCall, Usage

log = get_task_logger(__name__)

DISCARDED = {"code": "not_found", "message": "The account or API key of this completion is gone."}
STORAGE_FAILED = ("storage_failed", "The database refused to store this generation.")


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


def store_completion(generation: Generation) -> None:
    """Insert a claimed stateless completion's row; raises Discarded when its user or key
    is gone (the foreign keys cascade from them), Unstorable when its request is refused."""
    with refusals_as_unstorable():
        try:
            with worker_session() as session:
                session.add(generation)
        except IntegrityError as exc:
            raise Discarded from exc


class CompletionRow:
    """A stateless completion's row, which waits for its first token, or for its end if
    none comes, and is stored once. A conversation turn has none: the API wrote its row."""

    def __init__(self, generation: Generation | None = None) -> None:
        self._unstored = generation

    def store(self) -> None:
        """Store the row if it still waits; raises as `store_completion` does."""
        generation, self._unstored = self._unstored, None
        if generation is not None:
            store_completion(generation)


@dataclass
class Finished:
    """How a generation ended, for its stream: the terminal event and its data; whether
    its quota is given back (it failed before the client got anything); whether its
    conversation still has no title (none set by its user, none generated), so a title
    job is worth queueing; the thinking blocks to keep for a later tool-result turn."""

    event: str
    data: dict
    refund: bool = False
    untitled: bool = False
    # A stateless tool-use turn's thinking blocks, kept under its tool-call ids with the
    # terminal event (workers/generation/thinking.py).
    kept_blocks: KeptBlocks | None = None


def row_refused(generation: Generation, exc: Unstorable, *, produced: bool) -> Finished:
    """A completion whose row was refused: no row to end, the stream alone tells."""
    log.warning(
        "completion row refused", extra={"generation_id": str(generation.id), "error": str(exc)}
    )
    data = {"code": STORAGE_FAILED[0], "message": STORAGE_FAILED[1]}
    return Finished(ERROR, data, refund=not produced)


def store_end(
    generation: Generation,
    row: CompletionRow,
    status: GenerationStatus,
    outcome: Outcome,
    call: ProviderCall | None,
    error: tuple[str, str] | None = None,
) -> Finished | None:
    """Store the end, after the completion's row if it still waits; None when another end
    (the sweep) or a deletion came first. A completion whose user or key is gone, or
    whose row is refused, ends in its stream alone."""
    try:
        row.store()
    except Discarded:
        return Finished(ERROR, DISCARDED)
    except Unstorable as exc:
        return row_refused(generation, exc, produced=outcome.produced)
    finished = _finish(generation, status, outcome, call, error)
    if finished is not None and status == GenerationStatus.FAILED:
        finished.refund = not outcome.produced
    return finished


def final_usage(call: ProviderCall | None, outcome: Outcome) -> tuple[int, int, bool]:
    """The provider's own counts; an estimate (flagged) only where it gave none."""
    prompt, completion = outcome.usage.prompt_tokens, outcome.usage.completion_tokens
    estimated = prompt is None or completion is None
    if prompt is None:
        # Content may be absent (an assistant turn of tool calls) or a list of parts.
        texts = [_text_of(m.get("content")) for m in call.messages] if call else []
        prompt = sum(estimate_tokens(text) for text in texts)
    if completion is None:
        generated = (
            outcome.reasoning
            + outcome.text
            + "".join(c["function"]["arguments"] for c in outcome.tool_calls)
        )
        completion = estimate_tokens(generated) if generated else 0
    return prompt, completion, estimated


def _text_of(content: Any) -> str:
    """A message's text parts: an image's base64 says nothing of its token count."""
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _finish(
    generation: Generation,
    status: GenerationStatus,
    outcome: Outcome,
    call: ProviderCall | None,
    error: tuple[str, str] | None,
) -> Finished | None:
    """Store the reply, usage and final status in one transaction. A reply the database
    refuses (usage no column holds, ...) is not stored: the generation then ends failed
    with `storage_failed`."""
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
    prompt, completion, estimated = final_usage(call, outcome)
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
        reported = outcome.usage
        keep_message = generation.conversation_id is not None and (
            status != GenerationStatus.FAILED or outcome.text or outcome.reasoning
        )
        if keep_message:
            message = Message(
                conversation_id=generation.conversation_id,
                role="assistant",
                content=outcome.text,
                reasoning=outcome.reasoning or None,
                status=MESSAGE_STATUS_AT_END[status],
                model=generation.model,
                prompt_tokens=prompt,
                completion_tokens=completion,
                reasoning_tokens=reported.reasoning_tokens,
                cached_tokens=reported.cached_tokens,
                provider_blocks=(
                    {"thinking_blocks": outcome.thinking_blocks}
                    if outcome.thinking_blocks
                    else None
                ),
            )
            session.add(message)
            session.flush()
            untitled = bool(
                session.scalar(
                    update(Conversation)
                    .where(Conversation.id == generation.conversation_id)
                    .values(updated_at=datetime.now(UTC))
                    .returning(
                        Conversation.title.is_(None) & Conversation.title_generated.is_(False)
                    )
                )
            )
        ended = {
            "status": ending.target,
            "finished_at": datetime.now(UTC),
            "first_token_at": outcome.first_token_at,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "reasoning_tokens": reported.reasoning_tokens,
            "cached_tokens": reported.cached_tokens,
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
            cached = reported.cached_tokens or 0
            cache_write = reported.cache_write_tokens or 0
            session.add(
                UsageRecord(
                    user_id=generation.user_id,
                    api_key_id=generation.api_key_id,
                    generation_id=generation.id,
                    model=generation.model,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    cached_tokens=cached,
                    cache_write_tokens=cache_write,
                    reasoning_tokens=reported.reasoning_tokens or 0,
                    cost=cost_of(generation.model, prompt, completion, cached, cache_write),
                )
            )
        session.flush()
        usage = usage_payload(
            prompt, completion, estimated, reported.reasoning_tokens, reported.cached_tokens
        )
        if status == GenerationStatus.DONE:
            if message is None:
                answer: dict[str, Any] = {
                    "content": outcome.text,
                    "usage": usage,
                    "finish_reason": outcome.finish_reason or "stop",
                }
                if outcome.reasoning:
                    answer["reasoning"] = outcome.reasoning
                if outcome.thinking_blocks:
                    answer["thinking_blocks"] = outcome.thinking_blocks
                kept = None
                if outcome.tool_calls:
                    answer["tool_calls"] = outcome.tool_calls
                    if outcome.thinking_blocks:
                        kept = KeptBlocks(outcome.tool_calls, outcome.thinking_blocks)
                return Finished(DONE, answer, kept_blocks=kept)
            data = {"message": message_payload(message), "usage": usage}
            return Finished(DONE, data, untitled=untitled)
        if status == GenerationStatus.CANCELLED:
            payload = message_payload(message) if message else None
            return Finished(CANCELLED, {"message": payload, "usage": usage})
        assert error is not None
        return Finished(ERROR, {"code": error[0], "message": error[1]})
