"""The generation state machine (core/lifecycle.py): the transitions as data, and the
database's CHECK constraints holding exactly the enums' values."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from core.db import worker_session
from core.lifecycle import (
    CANCEL,
    CLAIM,
    FAIL,
    FINISH,
    HISTORY_MESSAGE_STATUSES,
    MARK_LOST,
    MESSAGE_STATUS_AT_END,
    TERMINAL_STATUSES,
    TRANSITIONS,
    WORKER_ENDS,
    GenerationStatus,
    MessageStatus,
    check_in,
)
from models import Conversation, Generation, Message

Q, R = GenerationStatus.QUEUED, GenerationStatus.RUNNING
DONE, FAILED, CANCELLED = (
    GenerationStatus.DONE,
    GenerationStatus.FAILED,
    GenerationStatus.CANCELLED,
)


def test_statuses_are_the_strings_stored_and_sent() -> None:
    assert [s.value for s in GenerationStatus] == [
        "queued",
        "running",
        "done",
        "failed",
        "cancelled",
    ]
    assert [s.value for s in MessageStatus] == ["complete", "failed", "cancelled"]
    assert GenerationStatus.DONE == "done" and str(MessageStatus.COMPLETE) == "complete"
    assert json.dumps({"status": GenerationStatus.RUNNING}) == '{"status": "running"}'


@pytest.mark.parametrize(
    ("transition", "sources", "target"),
    [
        (CLAIM, {Q}, R),
        (FINISH, {R}, DONE),
        (FAIL, {Q, R}, FAILED),
        (CANCEL, {Q, R}, CANCELLED),
        (MARK_LOST, {R}, FAILED),
    ],
    ids=lambda value: getattr(value, "name", None),
)
def test_transitions(transition, sources, target) -> None:
    assert transition.sources == sources and transition.target == target
    for status in GenerationStatus:
        assert transition.permits(status) is (status in sources)
        assert transition.permits(status.value) is (status in sources)
    assert not transition.permits(None)


def test_terminal_statuses_are_final_and_every_other_can_reach_one() -> None:
    assert TERMINAL_STATUSES == {DONE, FAILED, CANCELLED}
    for transition in TRANSITIONS:
        assert not transition.sources & TERMINAL_STATUSES
    for status in set(GenerationStatus) - TERMINAL_STATUSES:
        assert any(t.permits(status) and t.target in TERMINAL_STATUSES for t in TRANSITIONS)


def test_each_end_stores_its_message_status() -> None:
    assert MESSAGE_STATUS_AT_END == {
        DONE: MessageStatus.COMPLETE,
        FAILED: MessageStatus.FAILED,
        CANCELLED: MessageStatus.CANCELLED,
    }
    # A failed reply is left out of the next turn's history; a stopped one is kept.
    assert HISTORY_MESSAGE_STATUSES == {MessageStatus.COMPLETE, MessageStatus.CANCELLED}


def test_a_worker_ends_only_what_it_runs() -> None:
    assert set(WORKER_ENDS) == TERMINAL_STATUSES
    for status, transition in WORKER_ENDS.items():
        assert transition.target == status and transition.sources == {R}


def test_narrowing_keeps_the_move_and_refuses_other_sources() -> None:
    unclaimed = CANCEL.from_(Q)
    assert unclaimed.sources == {Q} and unclaimed.target == CANCELLED
    with pytest.raises(ValueError):
        FINISH.from_(Q)
    with pytest.raises(ValueError):
        CANCEL.from_()


def _sql(clause) -> str:
    return str(clause.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def test_the_where_a_transition_requires() -> None:
    assert _sql(CLAIM.where(Generation.status)) == "generations.status = 'queued'"
    # Several sources in the enum's order, whatever the set's.
    assert _sql(FAIL.where(Generation.status)) == "generations.status IN ('queued', 'running')"


def test_check_text_lists_every_value_in_order() -> None:
    assert check_in("status", MessageStatus) == "status IN ('complete', 'failed', 'cancelled')"


def _allowed(constraint: str) -> list[str]:
    with worker_session() as session:
        definition = session.scalar(
            text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"),
            {"name": constraint},
        )
    assert definition is not None, f"{constraint} is missing"
    return re.findall(r"'([^']*)'", definition)


def test_the_migrated_checks_allow_exactly_the_enums() -> None:
    # `alembic check` does not compare CHECK constraints: the migration's text is held here.
    assert _allowed("ck_generations_status") == [s.value for s in GenerationStatus]
    assert _allowed("ck_messages_status") == [s.value for s in MessageStatus]


def test_the_database_refuses_a_status_outside_the_enums(make_user) -> None:
    user = make_user()
    with worker_session() as session:
        conversation = Conversation(user_id=user.id)
        session.add(conversation)
        session.flush()
        conversation_id = conversation.id
    refusals = [
        (
            Generation(
                id=uuid.uuid4(), user_id=user.id, provider="local", model="m", status="lost"
            ),
            "ck_generations_status",
        ),
        (
            Message(conversation_id=conversation_id, role="user", content="x", status="partial"),
            "ck_messages_status",
        ),
    ]
    for row, constraint in refusals:
        with pytest.raises(IntegrityError) as refused:
            with worker_session() as session:
                session.add(row)
        assert refused.value.orig.diag.constraint_name == constraint
    with worker_session() as session:
        assert session.scalar(select(Generation.id)) is None
        assert session.scalar(select(Message.id)) is None
