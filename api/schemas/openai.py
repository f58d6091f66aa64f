"""OpenAI-compatible shapes: the model list (chat completion shapes follow)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class OpenAIModel(BaseModel):
    id: str = Field(examples=["deepseek-chat"])
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time; 0, the catalogue has no dates", examples=[0])
    owned_by: str = Field(examples=["deepseek"])


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]
