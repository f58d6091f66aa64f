"""A generation's provider request: a conversation's history trimmed to the model's
context, or a stateless completion's stored request (its tool-use turns given back
the thinking blocks kept for them); the provider key decrypted only here, at call time."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.attachments import ImageRef, attachment_store, data_url
from core.chat import CUSTOM_PROVIDER, PLUGIN_PROVIDER, context_window, trim_history
from core.crypto import decrypt_secret
from core.lifecycle import HISTORY_MESSAGE_STATUSES
from core.plans import model_spec
from core.plugin_accounts import usable
from core.providers import LOCAL_PROVIDER, provider_spec
from core.redis import sync_redis
from models import (
    Attachment,
    Conversation,
    Generation,
    Message,
    MessageAttachment,
    ModelConfig,
    PluginAccount,
    UserAIConfig,
)
from workers.generation.thinking import restore_blocks
from workers.providers import platform_endpoint
from workers.providers.base import ProviderCall, ProviderError


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
        # No reasoning: a conversation's turns have no tool calls, so no provider needs it back.
        images = _images_of(session, [m.id for m in rows if m.role == "user"])
        history = [
            {"role": m.role, "content": m.content, "images": images.get(m.id, [])}
            for m in rows
            if m.content or images.get(m.id)
        ]
        system_prompt = conversation.system_prompt or (
            ai_config.system_prompt if ai_config else None
        )
        trimmed = trim_history(
            system_prompt, history, context_window(generation.model, generation.provider)
        )
        messages = _with_images(session, trimmed, generation.provider)
        if ai_config and ai_config.temperature is not None:
            params.setdefault("temperature", ai_config.temperature)
        if ai_config and ai_config.reasoning_effort is not None:
            # The turn's own choice (stored in its request) wins over the user's default.
            params.setdefault("reasoning_effort", ai_config.reasoning_effort)
    else:
        messages = params.pop("messages")
    spec = model_spec(generation.model) if generation.provider != CUSTOM_PROVIDER else None
    if generation.conversation_id is None and spec and spec.reasoning_replay == "anthropic_blocks":
        messages = restore_blocks(sync_redis(), generation.user_id, messages)
    if spec is not None and spec.fixed_sampling:
        # The provider refuses a non-default temperature or top_p (a 400): never sent.
        params.pop("temperature", None)
        params.pop("top_p", None)
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
        reasoning_effort=params.pop("reasoning_effort", None),
        user_endpoint=user_endpoint,
        # The rest of a stateless request (top_p, stop, tools, ...) goes to the provider as is.
        extra=params,
    )


def _images_of(session: Session, message_ids: list[int]) -> dict[int, list[ImageRef]]:
    """Each user message's images, in the order attached (no bytes yet)."""
    if not message_ids:
        return {}
    rows = session.execute(
        select(MessageAttachment.message_id, Attachment.id, Attachment.mime_type, Attachment.size)
        .join(Attachment, Attachment.id == MessageAttachment.attachment_id)
        .where(MessageAttachment.message_id.in_(message_ids))
        .order_by(MessageAttachment.message_id, MessageAttachment.position)
    )
    found: dict[int, list[ImageRef]] = {}
    for message_id, image_id, mime_type, size in rows:
        found.setdefault(message_id, []).append(ImageRef(image_id, mime_type, size))
    return found


def _with_images(
    session: Session, messages: list[dict[str, Any]], provider: str
) -> list[dict[str, Any]]:
    """The trimmed history in OpenAI's format: a message that kept images becomes content
    parts (the images as base64 `data:` URLs, then the text), which each adapter sends in
    its provider's format. The built-in provider reads text only."""
    kept = [image.id for m in messages for image in m.get("images") or ()]
    data = attachment_store.load(session, kept) if provider != LOCAL_PROVIDER else {}
    out: list[dict[str, Any]] = []
    for message in messages:
        images = [image for image in message.pop("images", None) or () if image.id in data]
        if not images:
            out.append(message)
            continue
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": data_url(image.mime_type, data[image.id])}}
            for image in images
        ]
        if message["content"]:
            parts.append({"type": "text", "text": message["content"]})
        out.append({**message, "content": parts})
    return out


def chat_endpoint(session: Session, user_id: uuid.UUID) -> tuple[str, str]:
    """plug-in-api's OpenAI-compatible base URL and the user's own key, decrypted just
    in time for the call (never logged, never sent anywhere else)."""
    account = usable(session.scalar(select(PluginAccount).where(PluginAccount.user_id == user_id)))
    if account is None:
        raise ProviderError("The plug-in API account is not active.")
    return (
        provider_spec(PLUGIN_PROVIDER).base_url(),
        decrypt_secret(account.api_key_encrypted),
    )
