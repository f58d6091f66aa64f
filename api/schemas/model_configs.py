"""A user's own OpenAI-compatible endpoints; the key goes in, only a hint comes out."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ModelConfigCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=100, examples=["My vLLM"])
    base_url: str = Field(max_length=2048, examples=["https://llm.example.com/v1"])
    model: str = Field(min_length=1, max_length=200, examples=["llama-3.1-70b"])
    api_key: SecretStr = Field(min_length=1, max_length=4096, examples=["sk-..."])


class ModelConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=100, examples=["My vLLM"])
    base_url: str | None = Field(
        default=None, max_length=2048, examples=["https://llm.example.com/v1"]
    )
    model: str | None = Field(
        default=None, min_length=1, max_length=200, examples=["llama-3.1-70b"]
    )
    # Omitted: the stored key stays.
    api_key: SecretStr | None = Field(default=None, min_length=1, max_length=4096)


class ModelConfigOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str = Field(examples=["My vLLM"])
    base_url: str = Field(examples=["https://llm.example.com/v1"])
    model: str = Field(examples=["llama-3.1-70b"])
    api_key_hint: str = Field(examples=["9f3a"])
    created_at: datetime
    updated_at: datetime
