"""`python -m cli check-models`: the catalogue models a provider no longer lists.

Providers retire names; asking each configured provider for its model list names
the retirement before users meet it. Aliases are not checked themselves: they
exist for names the providers retired, and their targets are catalogue models.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from core.config import settings
from core.providers import PROVIDERS, AdapterKind, ProviderSpec

ANTHROPIC_VERSION = "2023-06-01"
TIMEOUT = httpx.Timeout(20.0)


@dataclass(frozen=True)
class ProviderReport:
    provider: str
    expected: list[str]
    missing: list[str]
    error: str | None = None
    skipped: str | None = None

    def line(self) -> str:
        if self.skipped:
            return f"{self.provider}: skipped ({self.skipped})"
        if self.error:
            return f"{self.provider}: could not list models ({self.error})"
        if self.missing:
            return f"{self.provider}: NOT LISTED: {', '.join(self.missing)}"
        return f"{self.provider}: ok ({', '.join(self.expected)})"


def _openai_ids(client: httpx.Client, spec: ProviderSpec, key: str) -> Iterator[str]:
    answer = client.get(
        spec.base_url().rstrip("/") + "/models", headers={"Authorization": f"Bearer {key}"}
    )
    answer.raise_for_status()
    for item in answer.json().get("data") or []:
        yield item["id"]


def _anthropic_ids(client: httpx.Client, spec: ProviderSpec, key: str) -> Iterator[str]:
    # Paged by `after_id` until `has_more` is false.
    params: dict[str, str | int] = {"limit": 1000}
    while True:
        answer = client.get(
            spec.base_url().rstrip("/") + "/v1/models",
            params=params,
            headers={"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION},
        )
        answer.raise_for_status()
        page = answer.json()
        for item in page.get("data") or []:
            yield item["id"]
        if not page.get("has_more") or not page.get("last_id"):
            return
        params = {"limit": 1000, "after_id": page["last_id"]}


def check_provider(client: httpx.Client, spec: ProviderSpec) -> ProviderReport:
    expected = sorted(
        name for name, model in settings.models.items() if model.provider == spec.name
    )
    key = spec.api_key()
    if not key:
        return ProviderReport(spec.name, expected, [], skipped=f"{spec.api_key_setting} not set")
    lister = _anthropic_ids if spec.adapter is AdapterKind.ANTHROPIC else _openai_ids
    try:
        listed = set(lister(client, spec, key))
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return ProviderReport(spec.name, expected, [], error=f"{type(exc).__name__}: {exc}"[:300])
    return ProviderReport(spec.name, expected, [name for name in expected if name not in listed])


def check_models() -> list[ProviderReport]:
    """One report per platform provider that has catalogue models."""
    with_models = {model.provider for model in settings.models.values()}
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        return [
            check_provider(client, spec)
            for spec in PROVIDERS.values()
            if spec.is_platform and spec.name in with_models
        ]
