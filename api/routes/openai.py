"""OpenAI-compatible API: `/v1/models` and `/v1/chat/completions` (API key or JWT)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from api.completions import COMPLETION_RESPONSES, create_completion
from api.deps import Caller, RedisDep, SessionDep
from api.schemas.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    ModelCapabilities,
    OpenAIModel,
    OpenAIModelList,
)
from core.chat import route_for_model
from core.config import settings
from core.plans import listed_models_for_plan

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get(
    "/models",
    response_model=OpenAIModelList,
    status_code=200,
    operation_id="openai-list-models",
    summary="The catalogue models the caller's plan may use, and their aliases",
)
async def list_models(caller: Caller) -> OpenAIModelList:
    return OpenAIModelList(
        data=[_listed(name, target) for name, target in listed_models_for_plan(caller.plan)]
    )


def _listed(name: str, target: str) -> OpenAIModel:
    spec = settings.models[target]
    return OpenAIModel(
        id=name,
        created=0,
        owned_by=spec.provider,
        capabilities=ModelCapabilities(
            vision=spec.vision, reasoning=spec.reasoning, tools=spec.tools
        ),
        context_window=spec.context_window,
        alias_of=None if name == target else target,
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    status_code=200,
    operation_id="openai-create-chat-completion",
    summary="OpenAI-compatible chat completion, streamed with `stream: true` (API key or JWT)",
    responses=COMPLETION_RESPONSES,
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    caller: Caller,
    session: SessionDep,
    redis: RedisDep,
    response: Response,
) -> ChatCompletion | StreamingResponse:
    """A stateless generation through the same workers as chat. A client that
    disconnects mid-stream is still billed for what the provider generated."""
    return await create_completion(
        body,
        caller=caller,
        route=route_for_model(caller.plan, body.model),
        kind="completion",
        session=session,
        redis=redis,
        response=response,
    )
