"""OpenAI-compatible API: `/v1/models` and `/v1/chat/completions` (API key or JWT)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Caller
from api.schemas.openai import OpenAIModel, OpenAIModelList
from core.plans import model_spec, models_for_plan

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get(
    "/models",
    response_model=OpenAIModelList,
    status_code=200,
    operation_id="openai-list-models",
    summary="The catalogue models the caller's plan may use",
)
async def list_models(caller: Caller) -> OpenAIModelList:
    return OpenAIModelList(
        data=[
            OpenAIModel(id=name, created=0, owned_by=model_spec(name).provider)
            for name in models_for_plan(caller.plan)
        ]
    )
