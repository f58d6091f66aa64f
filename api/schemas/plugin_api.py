"""The plug-in-api proxy: our account answer and the request bodies we forward."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.plugin_accounts import PluginAccountStatus


class PluginAccountOut(BaseModel):
    """The caller's plug-in-api account; its key is never part of any answer."""

    status: PluginAccountStatus = Field(examples=["active"])
    plugin_user_id: str | None = Field(default=None, examples=["7c9e6679-7425-40de"])
    created_at: datetime | None = None
    last_used_at: datetime | None = None


class OAuthAuthorizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_shared: Literal[0, 1] = Field(
        default=0, description="1 puts the linked account in the shared pool.", examples=[0]
    )


class OAuthCallbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    callback_url: str = Field(
        min_length=1,
        max_length=4096,
        description="The full URL the browser was sent back to after authorizing.",
        examples=["http://localhost:8045/oauth-callback?code=4/0Ab...&state=..."],
    )


class AccountStatusUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal[0, 1] = Field(description="0 disables the account, 1 enables it.", examples=[1])


class PreferenceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefer_shared: Literal[0, 1] = Field(
        description="1 uses the shared pool before the user's own accounts.", examples=[0]
    )
