"""Chat rules shared by the API and the workers: model routing, prompt trimming,
token estimates, cost and title clean-up. No FastAPI or Celery here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core.errors import AppError
from core.input_rules import storable_text
from core.plans import allowed_model, canonical_model, model_spec, plan_spec
from core.providers import CUSTOM_PROVIDER, LOCAL_PROVIDER, provider_api_key
from core.providers import PLUGIN_PROVIDER as PLUGIN_PROVIDER  # re-exported for the workers

# Context window assumed for a user's own endpoint, whose size we cannot know.
CUSTOM_CONTEXT_WINDOW = 16_000
TITLE_MAX_CHARS = 60


@dataclass(frozen=True)
class Route:
    """Where a generation goes: provider name, model name, optional model config."""

    provider: str
    model: str
    model_config_id: object | None = None


# The name that asks for the plan's own default model, wherever a model is named.
AUTO_MODEL = "auto"


def route_for_model(plan: str, model: str) -> Route:
    """The platform route for `model` (`auto`: the plan's default), refused when the plan
    does not include it."""
    if model == AUTO_MODEL:
        model = default_model(plan)
    spec = allowed_model(plan, model)
    # Without a key the built-in provider answers, so a fresh install streams end to end.
    provider = spec.provider if provider_api_key(spec.provider) else LOCAL_PROVIDER
    # An alias reaches the provider as the current id: the old name may be retired there.
    return Route(provider=provider, model=canonical_model(model))


def require_vision(route: Route) -> None:
    """Refuse images for a catalogue model without vision (400 `unsupported_content`). A
    user's own endpoint, or a model the catalogue does not describe, is the upstream's to
    judge."""
    if route.provider == CUSTOM_PROVIDER:
        return
    spec = model_spec(route.model)
    if spec is not None and not spec.vision:
        raise AppError(f"The model {route.model} cannot read images.", code="unsupported_content")


def default_model(plan: str) -> str:
    return plan_spec(plan).default_model


def context_window(route_model: str, provider: str) -> int:
    if provider == CUSTOM_PROVIDER:
        return CUSTOM_CONTEXT_WINDOW
    spec = model_spec(route_model)
    return spec.context_window if spec else CUSTOM_CONTEXT_WINDOW


def estimate_tokens(text: str) -> int:
    """A provider-independent estimate (about four characters a token)."""
    return max(1, (len(text) + 3) // 4)


# What one image costs in the context, for trimming only (the usage recorded is always
# the provider's own count): about what Claude and GPT-4o charge for a 1-megapixel image.
IMAGE_TOKEN_ESTIMATE = 1_600
# Per request, whatever the context allows: Anthropic refuses bodies over 32 MB, and base64
# grows the bytes by a third.
MAX_IMAGES_PER_REQUEST = 20
MAX_IMAGE_BYTES_PER_REQUEST = 20 * 1024 * 1024


def trim_history(
    system_prompt: str | None,
    messages: list[dict[str, Any]],
    window: int,
    reserve_for_output: int | None = None,
) -> list[dict[str, Any]]:
    """System prompt plus the newest messages that fit `window` tokens.

    The newest message (the user's question) is always kept, with its images; an older
    message that does not fit ends the walk so the history stays contiguous. A message
    may carry `images` (core/attachments.py's ImageRef): earlier ones are kept only in
    the room the text leaves (and within the per-request caps), newest first, so the
    oldest images are the first dropped; their message's text stays.
    """
    reserve = reserve_for_output if reserve_for_output is not None else min(4096, window // 4)
    budget = window - reserve
    head: list[dict[str, Any]] = []
    if system_prompt:
        head = [{"role": "system", "content": system_prompt}]
        budget -= estimate_tokens(system_prompt) + 4
    kept: list[dict[str, Any]] = []
    for message in reversed(messages):
        cost = estimate_tokens(message["content"]) + 4
        if not kept:
            cost += IMAGE_TOKEN_ESTIMATE * len(message.get("images") or ())
        if kept and cost > budget:
            break
        kept.append(message)
        budget -= cost
    if any(message.get("images") for message in kept):
        kept = _fit_images(kept, budget)
    return head + list(reversed(kept))


def _fit_images(newest_first: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The messages with the images that fit; the newest message's are always kept."""
    newest = list(newest_first[0].get("images") or ())
    count, size = len(newest), sum(image.size for image in newest)
    fitted = [newest_first[0]]
    for message in newest_first[1:]:
        images = message.get("images")
        if not images:
            fitted.append(message)
            continue
        chosen = []
        for image in images:
            if (
                budget < IMAGE_TOKEN_ESTIMATE
                or count >= MAX_IMAGES_PER_REQUEST
                or size + image.size > MAX_IMAGE_BYTES_PER_REQUEST
            ):
                break
            chosen.append(image)
            budget -= IMAGE_TOKEN_ESTIMATE
            count += 1
            size += image.size
        fitted.append({**message, "images": chosen})
    return fitted


def cost_of(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Decimal:
    """USD for one generation. `prompt_tokens` counts every input token; those read from
    and written to the provider's cache take the model's cache prices (its input price
    where it names none). Reasoning is part of the completion, billed as output."""
    spec = model_spec(model)
    if spec is None:
        return Decimal("0")
    # A provider's report is trusted only as far as it adds up.
    cached = min(max(cached_tokens, 0), prompt_tokens)
    written = min(max(cache_write_tokens, 0), prompt_tokens - cached)
    uncached = prompt_tokens - cached - written
    read_price = spec.input_price if spec.cache_read_price is None else spec.cache_read_price
    write_price = spec.input_price if spec.cache_write_price is None else spec.cache_write_price
    total = (
        spec.input_price * uncached
        + read_price * cached
        + write_price * written
        + spec.output_price * completion_tokens
    )
    return total / Decimal(1_000_000)


# A reasoning block, closed or cut off by the title's token limit.
_REASONING = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_TITLE_PREFIX = re.compile(r"^title\s*:\s*", re.IGNORECASE)
_TITLE_DECORATION = "\"'`*“”‘’「」『』«»‹› "


def clean_title(raw: str) -> str:
    """A model's title answer without reasoning, quotes, Markdown emphasis, a `Title:`
    prefix (on its line or the one before) or trailing dots."""
    lines = [line.strip() for line in _REASONING.sub("", storable_text(raw)).splitlines()]
    for line in filter(None, lines):
        text = _TITLE_PREFIX.sub("", line.strip(_TITLE_DECORATION)).strip(_TITLE_DECORATION)
        text = text.rstrip(".").strip(_TITLE_DECORATION)
        if text:
            return truncate_title(text)
    return ""


def truncate_title(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= TITLE_MAX_CHARS:
        return text
    # Cut at the last space that leaves room for the ellipsis (a word that ends right
    # there is whole and kept); one long word is cut inside.
    cut = text[:TITLE_MAX_CHARS]
    head = cut.rsplit(" ", 1)[0] if " " in cut else cut[:-1]
    return head.rstrip() + "…"


def message_payload(message: Any) -> dict[str, Any]:
    """The API's `Message` shape, for stream events written by workers."""
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "reasoning": message.reasoning,
        # Workers write replies only, and a reply carries no images (a user message's are
        # listed by the conversation routes).
        "attachments": [],
        "status": message.status,
        "model": message.model,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "reasoning_tokens": message.reasoning_tokens,
        "cached_tokens": message.cached_tokens,
        "created_at": message.created_at.isoformat() if message.created_at else None,
    }


def usage_payload(
    prompt_tokens: int,
    completion_tokens: int,
    estimated: bool,
    reasoning_tokens: int | None = None,
    cached_tokens: int | None = None,
) -> dict[str, Any]:
    """API.md's `usage`; reasoning and cached tokens are null where the provider gave none."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "reasoning_tokens": reasoning_tokens,
        "cached_tokens": cached_tokens,
        "estimated": estimated,
    }
