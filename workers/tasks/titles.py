"""`workers.titles.generate`: name a new conversation from its first exchange."""

from __future__ import annotations

import uuid

from celery.utils.log import get_task_logger
from sqlalchemy import select, update

from core.celery_app import celery_app
from core.chat import clean_title, default_model, route_for_model, truncate_title
from core.db import worker_session
from core.errors import AppError
from models import Conversation, Message
from workers.providers import platform_endpoint, provider_for
from workers.providers.base import ProviderCall, ProviderError

log = get_task_logger(__name__)

TITLE_PROMPT = (
    "Write a short title (at most six words) for the conversation below. "
    "Answer with the title only: no quotes, no explanation."
)


def _first_exchange(conversation_id: uuid.UUID) -> tuple[str, str] | None:
    with worker_session() as session:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None or conversation.title or conversation.title_generated:
            return None
        messages = session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.id)
            .limit(2)
        ).all()
    if not messages or messages[0].role != "user":
        return None
    reply = messages[1].content if len(messages) > 1 else ""
    return messages[0].content, reply


def _ask_for_title(question: str, reply: str) -> str:
    # The cheapest plan's default model names every conversation, whoever's it is.
    route = route_for_model("free", default_model("free"))
    base_url, api_key = platform_endpoint(route.provider)
    call = ProviderCall(
        base_url=base_url,
        api_key=api_key,
        model=route.model,
        messages=[
            {"role": "system", "content": TITLE_PROMPT},
            {"role": "user", "content": f"User: {question[:2000]}\n\nAssistant: {reply[:2000]}"},
        ],
        max_tokens=30,
        temperature=0.2,
        # A thinking model would spend the 30 tokens thinking; its reasoning is never
        # part of a title (`complete` answers the reply's text only).
        reasoning_effort="none",
    )
    text, _ = provider_for(route.provider).complete(call)
    return clean_title(text)


@celery_app.task(name="workers.titles.generate", ignore_result=True)
def generate_title(conversation_id: str) -> None:
    exchange = _first_exchange(uuid.UUID(conversation_id))
    if exchange is None:
        return
    question, reply = exchange
    try:
        title = _ask_for_title(question, reply)
    except (ProviderError, AppError) as exc:
        log.warning("title model failed, using the first message", extra={"error": str(exc)})
        title = ""
    title = title or truncate_title(question) or "New conversation"
    with worker_session() as session:
        # The user may have named the conversation meanwhile; their title wins.
        session.execute(
            update(Conversation)
            .where(
                Conversation.id == uuid.UUID(conversation_id),
                Conversation.title.is_(None),
                Conversation.title_generated.is_(False),
            )
            .values(title=title, title_generated=True)
        )
