"""Provider adapters; `provider_for` picks one by the provider name of a generation.

Which providers exist, their protocol and their endpoints: core/providers.py.
"""

from __future__ import annotations

from core.providers import PROVIDERS, AdapterKind, ProviderSpec, platform_endpoint
from workers.providers.anthropic import Anthropic
from workers.providers.base import Provider
from workers.providers.local import Local
from workers.providers.openai_compat import THINKING_MODE_PROVIDERS, OpenAICompatible

__all__ = ["platform_endpoint", "provider_for"]


def _adapter(spec: ProviderSpec) -> Provider:
    if spec.adapter is AdapterKind.OPENAI_COMPATIBLE:
        return OpenAICompatible(
            spec.display_name, thinking_mode=spec.name in THINKING_MODE_PROVIDERS
        )
    if spec.adapter is AdapterKind.ANTHROPIC:
        return Anthropic()
    return Local()


_ADAPTERS: dict[str, Provider] = {name: _adapter(spec) for name, spec in PROVIDERS.items()}


def provider_for(name: str) -> Provider:
    return _ADAPTERS[name]
