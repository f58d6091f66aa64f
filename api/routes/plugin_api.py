"""The plug-in-api proxy: each call goes upstream with the caller's own key, never shown to them.

The routes are served twice: under `/v1/plugin-api`, and under `/api/plugin-api` for clients
built from the integration document (seeds/004), tagged `compatibility`. One set of routes,
included under both prefixes; each inclusion names its operations (`route.name`, prefixed on
the alias) so OpenAPI operation ids stay unique.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from sqlalchemy import select

from api.completions import COMPLETION_RESPONSES, create_completion
from api.deps import Caller, RedisDep, SessionDep
from api.plugin_accounts import (
    PluginCredentials,
    active_account,
    active_credentials,
    pending_last_use,
    record_use,
)
from api.plugin_client import call_plugin_api
from api.schemas.openai import ChatCompletion, ChatCompletionRequest
from api.schemas.plugin_api import (
    AccountStatusUpdate,
    OAuthAuthorizeRequest,
    OAuthCallbackRequest,
    PluginAccountOut,
    PreferenceUpdate,
)
from core.chat import PLUGIN_PROVIDER, Route
from core.plugin_accounts import PENDING, PluginAccountStatus
from models import PluginAccount

routes = APIRouter()


async def _caller_id(caller: Caller) -> uuid.UUID:
    # A developer API key works here too ("key ok"); the plug-in-api key is the user's either way.
    return caller.user_id


CallerId = Annotated[uuid.UUID, Depends(_caller_id)]


async def _credentials(caller_id: CallerId, session: SessionDep) -> PluginCredentials:
    credentials = await active_credentials(session, caller_id)
    # Give the pooled connection back before an upstream call that may last its whole timeout.
    await session.close()
    return credentials


Credentials = Annotated[PluginCredentials, Depends(_credentials)]
CookieId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.:-]{0,199}$", examples=["abc123"])
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"description": "The account is still being provisioned (`plugin_account_pending`)."},
    502: {"description": "plug-in-api failed (`upstream_error`)."},
    503: {"description": "plug-in-api is unreachable or too slow (`unavailable`)."},
}
_PASSED_ON = "plug-in-api's answer, passed on as it came."


async def _forward(
    credentials: PluginCredentials,
    redis: RedisDep,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
) -> Response:
    answer = await call_plugin_api(method, path, credentials.api_key, json=json, params=params)
    await record_use(redis, credentials.user_id)
    return answer


@routes.get(
    "/key",
    response_model=PluginAccountOut,
    status_code=200,
    name="plugin-api-get-key",
    summary="The caller's plug-in-api account (never its key)",
)
async def get_key(caller_id: CallerId, session: SessionDep, redis: RedisDep) -> PluginAccountOut:
    account = await session.scalar(select(PluginAccount).where(PluginAccount.user_id == caller_id))
    if account is None:
        # The beat re-queue gives every user without an account a pending one.
        return PluginAccountOut(status=PENDING)
    unflushed = await pending_last_use(redis, caller_id)
    last_used_at = max(
        (moment for moment in (account.last_used_at, unflushed) if moment), default=None
    )
    return PluginAccountOut(
        # The column holds only these (core/plugin_accounts.py); the schema says which.
        status=cast(PluginAccountStatus, account.status),
        plugin_user_id=account.plugin_user_id,
        created_at=account.created_at,
        last_used_at=last_used_at,
    )


@routes.post(
    "/oauth/authorize",
    status_code=200,
    name="plugin-api-oauth-authorize",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def oauth_authorize(
    body: OAuthAuthorizeRequest, credentials: Credentials, redis: RedisDep
) -> Response:
    return await _forward(
        credentials, redis, "POST", "/api/oauth/authorize", json=body.model_dump()
    )


@routes.post(
    "/oauth/callback",
    status_code=200,
    name="plugin-api-oauth-callback",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def oauth_callback(
    body: OAuthCallbackRequest, credentials: Credentials, redis: RedisDep
) -> Response:
    return await _forward(
        credentials, redis, "POST", "/api/oauth/callback/manual", json=body.model_dump()
    )


@routes.get(
    "/accounts",
    status_code=200,
    name="plugin-api-list-accounts",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def list_accounts(credentials: Credentials, redis: RedisDep) -> Response:
    return await _forward(credentials, redis, "GET", "/api/accounts")


@routes.get(
    "/accounts/{cookie_id}",
    status_code=200,
    name="plugin-api-get-account",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def get_account(cookie_id: CookieId, credentials: Credentials, redis: RedisDep) -> Response:
    return await _forward(credentials, redis, "GET", f"/api/accounts/{cookie_id}")


@routes.put(
    "/accounts/{cookie_id}/status",
    status_code=200,
    name="plugin-api-update-account-status",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def update_account_status(
    cookie_id: CookieId, body: AccountStatusUpdate, credentials: Credentials, redis: RedisDep
) -> Response:
    return await _forward(
        credentials, redis, "PUT", f"/api/accounts/{cookie_id}/status", json=body.model_dump()
    )


@routes.delete(
    "/accounts/{cookie_id}",
    status_code=200,
    name="plugin-api-delete-account",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def delete_account(
    cookie_id: CookieId, credentials: Credentials, redis: RedisDep
) -> Response:
    return await _forward(credentials, redis, "DELETE", f"/api/accounts/{cookie_id}")


@routes.get(
    "/accounts/{cookie_id}/quotas",
    status_code=200,
    name="plugin-api-get-account-quotas",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def get_account_quotas(
    cookie_id: CookieId, credentials: Credentials, redis: RedisDep
) -> Response:
    return await _forward(credentials, redis, "GET", f"/api/accounts/{cookie_id}/quotas")


@routes.get(
    "/quotas/user",
    status_code=200,
    name="plugin-api-get-user-quotas",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def get_user_quotas(credentials: Credentials, redis: RedisDep) -> Response:
    return await _forward(credentials, redis, "GET", "/api/quotas/user")


@routes.get(
    "/quotas/shared-pool",
    status_code=200,
    name="plugin-api-get-shared-pool-quotas",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def get_shared_pool_quotas(credentials: Credentials, redis: RedisDep) -> Response:
    return await _forward(credentials, redis, "GET", "/api/quotas/shared-pool")


@routes.get(
    "/quotas/consumption",
    status_code=200,
    name="plugin-api-get-quota-consumption",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def get_quota_consumption(
    credentials: Credentials,
    redis: RedisDep,
    limit: Annotated[int | None, Query(ge=1, le=1000, examples=[100])] = None,
    start_date: Annotated[date | None, Query(examples=["2025-01-01"])] = None,
    end_date: Annotated[date | None, Query(examples=["2025-01-31"])] = None,
) -> Response:
    params = {
        "limit": limit,
        "start_date": start_date.isoformat() if start_date else None,
        "end_date": end_date.isoformat() if end_date else None,
    }
    return await _forward(credentials, redis, "GET", "/api/quotas/consumption", params=params)


@routes.get(
    "/models",
    status_code=200,
    name="plugin-api-list-models",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def list_models(credentials: Credentials, redis: RedisDep) -> Response:
    return await _forward(credentials, redis, "GET", "/v1/models")


@routes.post(
    "/chat/completions",
    response_model=ChatCompletion,
    status_code=200,
    name="plugin-api-create-chat-completion",
    summary="plug-in-api's chat completions through our workers, on the caller's quota",
    responses={**COMPLETION_RESPONSES, **_ERRORS},
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    caller: Caller,
    session: SessionDep,
    redis: RedisDep,
    response: Response,
) -> ChatCompletion | StreamingResponse:
    """The worker calls plug-in-api with the user's own key, decrypted only there;
    `model` is one of plug-in-api's (`GET /v1/plugin-api/models`)."""
    # Refused before the quota is touched: a pending account costs no request.
    await active_account(session, caller.user_id)
    answer = await create_completion(
        body,
        caller=caller,
        route=Route(PLUGIN_PROVIDER, body.model),
        kind="plugin",
        session=session,
        redis=redis,
        response=response,
    )
    await record_use(redis, caller.user_id)
    return answer


@routes.put(
    "/preference",
    status_code=200,
    name="plugin-api-update-preference",
    responses={200: {"description": _PASSED_ON}, **_ERRORS},
)
async def update_preference(
    body: PreferenceUpdate, credentials: Credentials, redis: RedisDep
) -> Response:
    return await _forward(
        credentials,
        redis,
        "PUT",
        f"/api/users/{quote(credentials.plugin_user_id, safe='')}/preference",
        json=body.model_dump(),
    )


def _operation_id(route: APIRoute) -> str:
    return route.name


def _compatibility_operation_id(route: APIRoute) -> str:
    return f"compatibility-{route.name}"


router = APIRouter()
router.include_router(
    routes, prefix="/v1/plugin-api", tags=["plugin-api"], generate_unique_id_function=_operation_id
)
router.include_router(
    routes,
    prefix="/api/plugin-api",
    tags=["compatibility"],
    generate_unique_id_function=_compatibility_operation_id,
)
