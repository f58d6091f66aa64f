"""The generation state machine: its statuses, the transitions between them and the
status each end gives the reply's message. Every writer of a status (the API, the
worker, the sweep) takes its target and its `WHERE` from here.

The statuses are `StrEnum`s: they compare equal to, and serialise as, the strings the
database and the API have always held. The message statuses are what is written: a
user message and a finished reply are `complete`; a reply cut short keeps the text
produced so far under its generation's end (`failed`, `cancelled`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement
from sqlalchemy.orm import QueryableAttribute


class GenerationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class MessageStatus(StrEnum):
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset(
    {GenerationStatus.DONE, GenerationStatus.FAILED, GenerationStatus.CANCELLED}
)

# The reply's message, stored at each end (a failed one only if it has text).
MESSAGE_STATUS_AT_END: Mapping[GenerationStatus, MessageStatus] = {
    GenerationStatus.DONE: MessageStatus.COMPLETE,
    GenerationStatus.FAILED: MessageStatus.FAILED,
    GenerationStatus.CANCELLED: MessageStatus.CANCELLED,
}

# What a later turn's history reads: a failed reply is left out, a stopped one kept.
HISTORY_MESSAGE_STATUSES = frozenset({MessageStatus.COMPLETE, MessageStatus.CANCELLED})


@dataclass(frozen=True)
class Transition:
    """A move to `target` that only a generation in one of `sources` may make."""

    name: str
    sources: frozenset[GenerationStatus]
    target: GenerationStatus

    def permits(self, status: str | None) -> bool:
        return status in self.sources

    def where(self, column: ColumnElement[str] | QueryableAttribute[str]) -> ColumnElement[bool]:
        """The condition an UPDATE of this transition needs, so that a row another
        writer already moved is left alone (and the statement matches nothing)."""
        if len(self.sources) == 1:
            (source,) = self.sources
            return column == source.value
        # In the enum's order: the same text for the same set, every time.
        return column.in_([status.value for status in GenerationStatus if status in self.sources])

    def from_(self, *sources: GenerationStatus) -> Transition:
        """The same move, for a writer that may take it from only some of its sources."""
        narrowed = frozenset(sources)
        if not narrowed or not narrowed <= self.sources:
            raise ValueError(f"{self.name} never starts from {sorted(narrowed)}")
        return Transition(self.name, narrowed, self.target)


def _transition(
    name: str, sources: Iterable[GenerationStatus], target: GenerationStatus
) -> Transition:
    return Transition(name, frozenset(sources), target)


_Q, _R = GenerationStatus.QUEUED, GenerationStatus.RUNNING

# A worker takes a queued generation.
CLAIM = _transition("claim", [_Q], GenerationStatus.RUNNING)
# The provider's reply came whole.
FINISH = _transition("finish", [_R], GenerationStatus.DONE)
# The provider, the request or the storage failed, or no worker came in time.
FAIL = _transition("fail", [_Q, _R], GenerationStatus.FAILED)
# The client asked to stop: the API ends a queued one, the worker a running one.
CANCEL = _transition("cancel", [_Q, _R], GenerationStatus.CANCELLED)
# Its worker process died mid-run (the sweep).
MARK_LOST = _transition("mark_lost", [_R], GenerationStatus.FAILED)

TRANSITIONS = (CLAIM, FINISH, FAIL, CANCEL, MARK_LOST)

# How a worker's own run ends, by the status it ends in.
WORKER_ENDS: Mapping[GenerationStatus, Transition] = {
    GenerationStatus.DONE: FINISH,
    GenerationStatus.FAILED: FAIL.from_(_R),
    GenerationStatus.CANCELLED: CANCEL.from_(_R),
}


def check_in(column: str, statuses: type[StrEnum]) -> str:
    """A CHECK constraint's text allowing exactly `statuses`' values in `column`."""
    values = ", ".join(f"'{member.value}'" for member in statuses)
    return f"{column} IN ({values})"
