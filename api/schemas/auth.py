"""Registration, sign-in and token answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from api.schemas.user import Username, UserOut


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(max_length=320, examples=["ada@example.com"])
    password: str = Field(min_length=8, max_length=1024, examples=["correct horse battery"])
    username: Username | None = None
    full_name: str | None = Field(default=None, max_length=200, examples=["Ada Lovelace"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Not EmailStr: a malformed address must fail like a wrong password, not differently.
    email: str = Field(min_length=1, max_length=320, examples=["ada@example.com"])
    password: str = Field(min_length=1, max_length=1024, examples=["correct horse battery"])


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096, examples=["eyJhbGciOi..."])


class AppleSignInRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity_token: str = Field(min_length=1, max_length=8192, examples=["eyJraWQiOi..."])
    # Apple sends the name only to the app, only on the first sign-in.
    full_name: str | None = Field(default=None, max_length=200, examples=["Ada Lovelace"])
    nonce: str | None = Field(
        default=None,
        max_length=256,
        description="The raw nonce the app gave Apple (or whose SHA-256 it gave), if any.",
        examples=["2f1d0c9e-nonce"],
    )


class TokenPair(BaseModel):
    access_token: str = Field(examples=["eyJhbGciOi..."])
    refresh_token: str = Field(examples=["eyJhbGciOi..."])
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(examples=[3600])
    user: UserOut


class OAuthAuthorization(BaseModel):
    authorization_url: str = Field(
        examples=["https://connect.linux.do/oauth2/authorize?response_type=code&..."]
    )
    state: str = Field(examples=["Vq3c0...", "opaque, single use, valid 10 minutes"])
