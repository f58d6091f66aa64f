"""Provider adapters; `provider_for` picks one by the provider name of a generation."""

from __future__ import annotations

from core.chat import CUSTOM_PROVIDER, LOCAL_PROVIDER, PLUGIN_PROVIDER
from core.config import settings
from workers.providers.anthropic import Anthropic
from workers.providers.base import Provider
from workers.providers.local import Local
from workers.providers.openai_compat import OpenAICompatible

_ADAPTERS: dict[str, Provider] = {
    "deepseek": OpenAICompatible("deepseek"),
    "kimi": OpenAICompatible("kimi"),
    CUSTOM_PROVIDER: OpenAICompatible("custom"),
    PLUGIN_PROVIDER: OpenAICompatible("plug-in-api"),
    "anthropic": Anthropic(),
    LOCAL_PROVIDER: Local(),
}


def provider_for(name: str) -> Provider:
    return _ADAPTERS[name]


def platform_endpoint(name: str) -> tuple[str, str]:
    """Base URL and key of a platform provider (empty for `local`)."""
    return {
        "deepseek": (settings.deepseek_base_url, settings.deepseek_api_key or ""),
        "kimi": (settings.kimi_base_url, settings.kimi_api_key or ""),
        "anthropic": (settings.anthropic_base_url, settings.anthropic_api_key or ""),
        LOCAL_PROVIDER: ("", ""),
    }[name]
