"""The provider table (core/providers.py) against the settings and the catalogue."""

from __future__ import annotations

from core.config import Settings, settings
from core.providers import PROVIDERS, AdapterKind, platform_endpoint, speaks_openai
from workers.providers import provider_for


def test_every_platform_provider_names_real_settings() -> None:
    for spec in PROVIDERS.values():
        for setting in (spec.base_url_setting, spec.api_key_setting):
            assert setting is None or setting in Settings.model_fields, (spec.name, setting)


def test_every_catalogue_model_has_a_platform_provider() -> None:
    for model, spec in settings.models.items():
        assert PROVIDERS[spec.provider].is_platform, model


def test_every_provider_has_an_adapter_of_its_kind() -> None:
    for name, spec in PROVIDERS.items():
        adapter = provider_for(name)
        assert (
            type(adapter).__name__
            == {
                AdapterKind.OPENAI_COMPATIBLE: "OpenAICompatible",
                AdapterKind.ANTHROPIC: "Anthropic",
                AdapterKind.LOCAL: "Local",
            }[spec.adapter]
        )
    assert speaks_openai("deepseek") and speaks_openai("plugin") and not speaks_openai("anthropic")
    assert platform_endpoint("local") == ("", "")
    assert platform_endpoint("kimi")[0] == settings.kimi_base_url


def test_plugin_api_base_url_comes_from_the_table() -> None:
    assert PROVIDERS["plugin"].base_url() == settings.plugin_api_base_url.rstrip("/") + "/v1"
    assert not PROVIDERS["plugin"].is_platform
