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

from celery.utils.log import get_task_logger

from core.admission import release_sync
from core.celery_app import celery_app
from core.errors import AppError
from core.input_rules import storable_text
from core.lifecycle import GenerationStatus
from core.quota import refund_generation
from core.streams import ERROR
from models import Generation
from workers.generation.claim import Claim, claim_completion, claim_turn
from workers.generation.outcome import Cancelled, Outcome, ReplyFailed
from workers.generation.persistence import (
    DISCARDED,
    Discarded,
    Finished,
    Unstorable,
    row_refused,
    store_end,
)
from workers.generation.stream_writer import publish_terminal, stream_reply
from workers.heartbeat import liveness
from workers.providers.base import ProviderCall, ProviderError

log = get_task_logger(__name__)

INTERNAL_ERROR = ("internal_error", "The generation failed unexpectedly.")


@celery_app.task(
    name="workers.chat.generate", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def generate(generation_id: str, spec: dict | None = None) -> None:
    """`spec`: a stateless completion's row (see `claim_completion`); None for a conversation's."""
    claim = claim_turn(generation_id) if spec is None else claim_completion(generation_id, spec)
    if claim is None:
        log.info("generation already claimed or ended", extra={"generation_id": generation_id})
        return
    try:
        _run(claim)
    finally:
        liveness.remove(generation_id)
        # Also when no terminal event came from here (deleted, or already swept).
        release_sync(claim.generation.user_id, generation_id)


def _run(claim: Claim) -> None:
    """Stream the reply and end the generation, whichever way its reply ends."""
    generation, row = claim.generation, claim.row
    call: ProviderCall | None = None
    try:
        call = claim.call()
        # A completion's row is stored once its first token is out, off that token's path.
        outcome = stream_reply(generation, call, row.store)
        _announce(generation, store_end(generation, row, GenerationStatus.DONE, outcome, call))
    except Cancelled as exc:
        _announce(
            generation, store_end(generation, row, GenerationStatus.CANCELLED, exc.partial, call)
        )
    except Discarded:
        # Its row could not be stored at the first token.
        _announce(generation, Finished(ERROR, DISCARDED))
    except Unstorable as exc:
        # Its row was refused at the first token, which the client already has.
        _announce(generation, row_refused(generation, exc, produced=True))
    except (ProviderError, AppError) as exc:
        partial = exc.partial if isinstance(exc, ReplyFailed) else Outcome.empty()
        # A provider's own error text is stored too.
        message = storable_text(exc.message if isinstance(exc, ProviderError) else exc.detail)
        log.warning(
            "generation failed", extra={"generation_id": str(generation.id), "error": message}
        )
        error = ("upstream_error", message)
        _announce(
            generation, store_end(generation, row, GenerationStatus.FAILED, partial, call, error)
        )
    except Exception:
        log.exception("generation crashed", extra={"generation_id": str(generation.id)})
        failed = store_end(
            generation, row, GenerationStatus.FAILED, Outcome.empty(), None, INTERNAL_ERROR
        )
        _announce(generation, failed)


def _announce(generation: Generation, finished: Finished | None) -> None:
    """End the stream as stored; nothing when another end (the sweep) or a deletion came
    first. A refund comes before the terminal event, so the client's next call sees it."""
    if finished is None:
        return
    if finished.refund:
        refund_generation(generation.user_id, generation.api_key_id, generation.id)
    publish_terminal(
        str(generation.id),
        finished.event,
        finished.data,
        generation.user_id,
        finished.kept_blocks,
    )
    if finished.untitled:
        celery_app.send_task("workers.titles.generate", args=(str(generation.conversation_id),))
