"""The provider table: every provider a generation may be routed to, the protocol
its adapter speaks and where its endpoint is configured. Everything else (routing,
the adapters registry, which requests take OpenAI-only parameters) derives from it.

No FastAPI or Celery here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.config import settings


class AdapterKind(StrEnum):
    OPENAI_COMPATIBLE = "openai-compatible"
    ANTHROPIC = "anthropic"
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One provider. A platform provider's endpoint and key come from two settings;
    plug-in-api's base URL from a setting and its key from the user's account; a model
    config's from the user, at call time."""

    name: str
    adapter: AdapterKind
    base_url_setting: str | None = None
    api_key_setting: str | None = None
    # Appended to the base URL setting (plug-in-api serves its OpenAI API under /v1).
    base_path: str = ""
    # How its errors name it, where that differs from `name`.
    label: str = ""

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @property
    def is_platform(self) -> bool:
        """Called with the platform's own key (from settings), not a user's."""
        return self.api_key_setting is not None

    def base_url(self) -> str:
        if self.base_url_setting is None:
            return ""
        url = str(getattr(settings, self.base_url_setting))
        return url.rstrip("/") + self.base_path if self.base_path else url

    def api_key(self) -> str | None:
        return getattr(settings, self.api_key_setting) if self.api_key_setting else None


# The provider name recorded for a user's own endpoint (a model config).
CUSTOM_PROVIDER = "custom"
# The built-in deterministic provider, used when a platform provider has no key.
LOCAL_PROVIDER = "local"
# plug-in-api's OpenAI-compatible chat, called with the user's own plug-in-api key.
PLUGIN_PROVIDER = "plugin"

PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            "deepseek", AdapterKind.OPENAI_COMPATIBLE, "deepseek_base_url", "deepseek_api_key"
        ),
        ProviderSpec("kimi", AdapterKind.OPENAI_COMPATIBLE, "kimi_base_url", "kimi_api_key"),
        ProviderSpec("anthropic", AdapterKind.ANTHROPIC, "anthropic_base_url", "anthropic_api_key"),
        ProviderSpec(CUSTOM_PROVIDER, AdapterKind.OPENAI_COMPATIBLE),
        ProviderSpec(
            PLUGIN_PROVIDER,
            AdapterKind.OPENAI_COMPATIBLE,
            "plugin_api_base_url",
            base_path="/v1",
            label="plug-in-api",
        ),
        ProviderSpec(LOCAL_PROVIDER, AdapterKind.LOCAL),
    )
}


def provider_spec(name: str) -> ProviderSpec:
    return PROVIDERS[name]


def provider_api_key(name: str) -> str | None:
    """A platform provider's key; None when unset or for a provider keyed per user."""
    spec = PROVIDERS.get(name)
    return spec.api_key() if spec else None


def platform_endpoint(name: str) -> tuple[str, str]:
    """Base URL and key of a platform provider (empty for `local`)."""
    spec = PROVIDERS[name]
    if not spec.is_platform and spec.adapter is not AdapterKind.LOCAL:
        raise KeyError(name)
    return spec.base_url(), spec.api_key() or ""


def speaks_openai(name: str) -> bool:
    """Whether the provider takes OpenAI's tools, response_format and content parts."""
    return PROVIDERS[name].adapter is AdapterKind.OPENAI_COMPATIBLE
