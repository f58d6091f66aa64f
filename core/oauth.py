"""OAuth2 authorization-code sign-in with any provider described by an `OAuthProviderSpec`.

The `state` is random, kept in Redis for ten minutes and consumed with GETDEL,
so it works once and only with the provider it was issued for. From the
provider's user info only the fields named in the spec are read: anything else
it returns (Linux.do's `api_key`, for one) is never stored.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import redis.asyncio as aioredis

from core.accounts import ExternalProfile
from core.config import OAuthProviderSpec, settings
from core.errors import AppError, Forbidden, NotFound, UpstreamError

STATE_TTL_SECONDS = 600
PROVIDER_TIMEOUT = 10.0


def provider_spec(provider: str) -> OAuthProviderSpec:
    spec = settings.oauth_provider(provider)
    if spec is None:
        raise NotFound(f"No OAuth provider called {provider!r} is configured.")
    return spec


def _state_key(state: str) -> str:
    return f"oauth:state:{state}"


async def start_authorization(
    redis: aioredis.Redis, provider: str, redirect_uri: str
) -> tuple[str, str]:
    """Return the provider URL to send the person to, and the state it carries."""
    spec = provider_spec(provider)
    state = secrets.token_urlsafe(32)
    await redis.set(
        _state_key(state),
        json.dumps({"provider": provider, "redirect_uri": redirect_uri}),
        ex=STATE_TTL_SECONDS,
    )
    query = {
        "response_type": "code",
        "client_id": spec.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
    }
    if spec.scope:
        query["scope"] = spec.scope
    separator = "&" if "?" in spec.authorize_url else "?"
    return f"{spec.authorize_url}{separator}{urlencode(query)}", state


async def _consume_state(redis: aioredis.Redis, provider: str, state: str) -> str:
    stored = await redis.getdel(_state_key(state))
    if stored is None:
        raise AppError(
            "The sign-in state is unknown, expired or already used.", code="invalid_state"
        )
    data = json.loads(stored)
    if data.get("provider") != provider:
        raise AppError("The sign-in state belongs to another provider.", code="invalid_state")
    return str(data["redirect_uri"])


def _field(profile: dict[str, Any], name: str | None) -> str | None:
    value = profile.get(name) if name else None
    if value is None or isinstance(value, bool):
        return None
    return str(value) or None


def _basic_client_auth(spec: OAuthProviderSpec) -> str:
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before the Basic encoding.
    pair = f"{quote_plus(spec.client_id)}:{quote_plus(spec.client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _oauth_error(answer: httpx.Response) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


async def _exchange_and_read_profile(
    spec: OAuthProviderSpec, code: str, redirect_uri: str
) -> dict[str, Any]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    headers = {"Accept": "application/json"}
    if spec.token_auth == "post":
        form |= {"client_id": spec.client_id, "client_secret": spec.client_secret}
    else:
        headers["Authorization"] = _basic_client_auth(spec)
    try:
        async with httpx.AsyncClient(timeout=PROVIDER_TIMEOUT, follow_redirects=False) as http:
            token_answer = await http.post(spec.token_url, data=form, headers=headers)
            if token_answer.status_code == 400 and _oauth_error(token_answer) == "invalid_grant":
                raise AppError(
                    "The sign-in code is invalid, expired or already used.", code="invalid_grant"
                )
            if token_answer.status_code != 200:
                raise UpstreamError(
                    f"The provider refused the sign-in code (HTTP {token_answer.status_code})."
                )
            access_token = token_answer.json().get("access_token")
            if not isinstance(access_token, str) or not access_token:
                raise UpstreamError("The provider answered without an access token.")
            profile_answer = await http.get(
                spec.userinfo_url,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            )
            if profile_answer.status_code != 200:
                raise UpstreamError(
                    f"The provider's user info failed (HTTP {profile_answer.status_code})."
                )
            profile = profile_answer.json()
    except httpx.HTTPError as error:
        raise UpstreamError("The provider could not be reached.") from error
    except ValueError as error:
        raise UpstreamError("The provider answered something that is not JSON.") from error
    if not isinstance(profile, dict):
        raise UpstreamError("The provider's user info is not an object.")
    return profile


async def finish_authorization(
    redis: aioredis.Redis, provider: str, code: str, state: str
) -> ExternalProfile:
    """Check the state, trade the code for the person's profile, and apply the spec's rules."""
    spec = provider_spec(provider)
    redirect_uri = await _consume_state(redis, provider, state)
    profile = await _exchange_and_read_profile(spec, code, redirect_uri)
    subject = _field(profile, spec.subject_field)
    if subject is None:
        raise UpstreamError("The provider's user info has no user id.")
    if any(profile.get(name) is not True for name in spec.require_true) or any(
        profile.get(name) for name in spec.require_false
    ):
        raise Forbidden(
            "This account may not sign in: it is not active or is silenced at the provider.",
            code="account_not_allowed",
        )
    return ExternalProfile(
        provider=provider,
        subject=subject,
        email=_field(profile, spec.email_field),
        email_verified=spec.emails_verified,
        username_hint=_field(profile, spec.username_field),
        full_name=_field(profile, spec.name_field),
        avatar_url=_field(profile, spec.avatar_field),
    )
