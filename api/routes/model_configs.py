"""A user's own OpenAI-compatible endpoints. The key is encrypted at once and never
returned; the base URL passes the SSRF guard here and again at every call."""

from __future__ import annotations

from anyio import to_thread
from fastapi import APIRouter, status
from fastapi.responses import Response
from sqlalchemy import select

from api.deps import CurrentUser, OwnedModelConfig, SessionDep
from api.schemas.model_configs import ModelConfigCreate, ModelConfigOut, ModelConfigUpdate
from core.crypto import encrypt_secret
from core.ssrf import resolve_checked
from models import ModelConfig

router = APIRouter(prefix="/v1/model-configs", tags=["model-configs"])


async def _checked_base_url(url: str) -> str:
    # DNS resolution blocks: off the event loop.
    await to_thread.run_sync(resolve_checked, url)
    return url.rstrip("/")


def _hint(key: str) -> str:
    # At most the last 4 characters, and never more than a quarter of a short key.
    return key[-min(4, len(key) // 4) :] if len(key) >= 4 else ""


@router.get("", response_model=list[ModelConfigOut], operation_id="model-configs-list")
async def list_model_configs(user: CurrentUser, session: SessionDep) -> list[ModelConfig]:
    configs = await session.scalars(
        select(ModelConfig).where(ModelConfig.user_id == user.id).order_by(ModelConfig.created_at)
    )
    return list(configs)


@router.post(
    "",
    response_model=ModelConfigOut,
    status_code=status.HTTP_201_CREATED,
    operation_id="model-configs-create",
)
async def create_model_config(
    body: ModelConfigCreate, user: CurrentUser, session: SessionDep
) -> ModelConfig:
    key = body.api_key.get_secret_value()
    config = ModelConfig(
        user_id=user.id,
        name=body.name or body.model,
        base_url=await _checked_base_url(body.base_url),
        model=body.model,
        api_key_encrypted=encrypt_secret(key),
        api_key_hint=_hint(key),
    )
    session.add(config)
    await session.commit()
    return config


@router.put("/{config_id}", response_model=ModelConfigOut, operation_id="model-configs-update")
async def update_model_config(
    body: ModelConfigUpdate, config: OwnedModelConfig, session: SessionDep
) -> ModelConfig:
    if body.base_url is not None:
        config.base_url = await _checked_base_url(body.base_url)
    if body.name is not None:
        config.name = body.name
    if body.model is not None:
        config.model = body.model
    if body.api_key is not None:
        key = body.api_key.get_secret_value()
        config.api_key_encrypted = encrypt_secret(key)
        config.api_key_hint = _hint(key)
    await session.commit()
    await session.refresh(config)
    return config


@router.delete(
    "/{config_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    response_model=None,
    operation_id="model-configs-delete",
)
async def delete_model_config(config: OwnedModelConfig, session: SessionDep) -> None:
    await session.delete(config)
    await session.commit()
