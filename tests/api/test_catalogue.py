"""The catalogue as clients and operators meet it: the model list with capabilities and
aliases, aliases reaching the provider as the current id, and `check-models` against the
fake providers' model lists."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.config import settings
from core.plans import plan_rank
from tests.conftest import ROOT
from tests.fakes.llm import DEFAULT_MODELS, FakeLLM

pytestmark = pytest.mark.usefixtures("celery_worker")


async def test_models_list_names_current_ids_and_aliases(client, make_user) -> None:
    user = make_user(plan="pro")
    listed = {
        m["id"]: m for m in (await client.get("/v1/models", headers=user.headers)).json()["data"]
    }
    allowed = {name for name, spec in settings.models.items() if plan_rank(spec.min_plan) <= 1}
    current = {name for name, item in listed.items() if item["alias_of"] is None}
    assert current == allowed
    # The mobile clients' names stay, each pointing at the current model of its family.
    assert listed["deepseek-chat"]["alias_of"] == "deepseek-flash"
    assert listed["moonshot-v1-32k"]["alias_of"] == "kimi-k2.6"
    assert "claude-3-5-sonnet-latest" not in listed  # a max model's alias, not pro's
    kimi = listed["kimi-k2.6"]
    assert kimi["capabilities"] == {"vision": True, "reasoning": True, "tools": True}
    assert kimi["context_window"] == settings.models["kimi-k2.6"].context_window
    assert listed["moonshot-v1-32k"]["capabilities"] == kimi["capabilities"]
    plan = (await client.get("/v1/user/plan", headers=user.headers)).json()
    assert set(plan["models"]) == set(listed)


@pytest.mark.parametrize(
    ("plan", "alias", "current"),
    [
        ("free", "deepseek-chat", "deepseek-flash"),
        ("pro", "moonshot-v1-32k", "kimi-k2.6"),
        ("max", "claude-3-5-sonnet-latest", "claude-sonnet-5-5"),
    ],
)
async def test_an_alias_reaches_the_provider_as_the_current_id(
    client, make_user, fake_llm: FakeLLM, plan: str, alias: str, current: str
) -> None:
    user = make_user(plan=plan)
    tag = f"alias-{plan}"
    answer = await client.post(
        "/v1/chat/completions",
        json={"model": alias, "messages": [{"role": "user", "content": f"hi [[tag={tag}]]"}]},
        headers=user.headers,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    [request] = fake_llm.requests_tagged(tag)
    assert request["body"]["model"] == current


async def test_every_plan_default_is_a_current_model(client, make_user) -> None:
    for plan, spec in settings.plans.items():
        assert spec.default_model in settings.models, plan
    refused = await client.post(
        "/v1/chat/completions",
        json={"model": "claude-3-5-sonnet-latest", "messages": [{"role": "user", "content": "x"}]},
        headers=make_user(plan="pro").headers,
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"


def _check_models(service_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "check-models"],
        cwd=ROOT,
        env=service_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_models_names_what_a_provider_no_longer_lists(
    service_env: dict[str, str], fake_llm: FakeLLM
) -> None:
    done = _check_models(service_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deepseek: ok" in done.stdout and "anthropic: ok" in done.stdout

    original = list(fake_llm.models["sk-ant-fake"])
    fake_llm.models["sk-ant-fake"] = [m for m in original if m != "claude-haiku-5-5"]
    try:
        retired = _check_models(service_env)
    finally:
        fake_llm.models["sk-ant-fake"] = original
    assert retired.returncode == 1
    assert "anthropic: NOT LISTED: claude-haiku-5-5" in retired.stdout
    assert "kimi: ok" in retired.stdout


def test_check_models_skips_providers_without_a_key(service_env: dict[str, str]) -> None:
    env = {**service_env, "KIMI_API_KEY": ""}
    done = _check_models(env)
    assert "kimi: skipped (kimi_api_key not set)" in done.stdout
    assert done.returncode == 0, done.stdout


def test_the_fakes_list_every_catalogue_model() -> None:
    listed = {model for models in DEFAULT_MODELS.values() for model in models}
    assert set(settings.models) <= listed
    assert all(target in settings.models for target in settings.model_aliases.values())


@pytest.mark.parametrize(("model", "sent"), [("deepseek-flash", True), ("kimi-k2.6", False)])
async def test_a_fixed_sampling_model_never_gets_a_temperature(
    client, make_user, fake_llm: FakeLLM, model: str, sent: bool
) -> None:
    """Kimi K2.6 (like Claude 5.x) answers 400 to a non-default temperature or top_p."""
    tag = f"sampling-{model}"
    answer = await client.post(
        "/v1/chat/completions",
        json={
            "model": model,
            "temperature": 0.3,
            "top_p": 0.5,
            "messages": [{"role": "user", "content": f"hi [[tag={tag}]]"}],
        },
        headers=make_user(plan="pro").headers,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    [request] = fake_llm.requests_tagged(tag)
    assert ("temperature" in request["body"], "top_p" in request["body"]) == (sent, sent)
