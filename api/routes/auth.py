"""Sign-up and sign-in (password, Apple, OAuth2 providers), token refresh and logout."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import AccessToken, RedisDep, SessionDep
from api.schemas.auth import (
    AppleSignInRequest,
    LoginRequest,
    OAuthAuthorization,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
)
from api.schemas.user import UserOut
from core import apple, oauth
from core.accounts import get_user_by_email, register_user, sign_in_external, verify_password
from core.auth_sessions import IssuedTokens, open_session, revoke_session, rotate_refresh_token
from core.errors import Unauthorized
from core.input_rules import InputRejected, check_strings
from core.login_limits import forget_login_attempts, reserve_login_attempt
from models import User

router = APIRouter(prefix="/v1/auth", tags=["auth"])

_LOGIN_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": LoginRequest.model_json_schema()},
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "username": {"type": "string", "description": "The account's email"},
                        "password": {"type": "string", "format": "password"},
                    },
                }
            },
        },
    }
}


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _token_pair(tokens: IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
        user=UserOut.model_validate(tokens.user),
    )


async def _open(session: SessionDep, user: User, request: Request) -> TokenPair:
    if not user.is_active:
        raise Unauthorized("The account is disabled.", code="invalid_credentials")
    tokens = await open_session(
        session,
        user,
        user_agent=request.headers.get("user-agent"),
        ip_address=_client_ip(request),
    )
    return _token_pair(tokens)


async def _login_credentials(request: Request) -> LoginRequest:
    """JSON `{email, password}`, or the OAuth2 password form that /docs' Authorize sends."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            # A multipart field may arrive as a file; only text fields are credentials.
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            check_strings(list(fields.items()), ("body",))
            return LoginRequest(
                email=fields.get("username", ""), password=fields.get("password", "")
            )
        return LoginRequest.model_validate_json(await request.body())
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from None
    except InputRejected as rejected:
        raise RequestValidationError(rejected.issues) from None


@router.post(
    "/register",
    response_model=TokenPair,
    status_code=201,
    operation_id="auth-register",
    summary="Create an account with email and password",
)
async def register(body: RegisterRequest, session: SessionDep, request: Request) -> TokenPair:
    user = await register_user(
        session,
        email=body.email,
        password=body.password,
        username=body.username,
        full_name=body.full_name,
    )
    return await _open(session, user, request)


@router.post(
    "/login",
    response_model=TokenPair,
    status_code=200,
    operation_id="auth-login",
    summary="Sign in with email and password (JSON or OAuth2 password form)",
    openapi_extra=_LOGIN_BODY_DOC,
)
async def login(request: Request, session: SessionDep, redis: RedisDep) -> TokenPair:
    credentials = await _login_credentials(request)
    ip_address = _client_ip(request)
    await reserve_login_attempt(redis, credentials.email, ip_address)
    user = await get_user_by_email(session, credentials.email)
    valid, upgraded_hash = await verify_password(
        credentials.password, user.password_hash if user else None
    )
    if user is None or not valid or not user.is_active:
        raise Unauthorized("The email or password is incorrect.", code="invalid_credentials")
    await forget_login_attempts(redis, credentials.email, ip_address)
    if upgraded_hash is not None:
        user.password_hash = upgraded_hash
    return await _open(session, user, request)


@router.post(
    "/refresh",
    response_model=TokenPair,
    status_code=200,
    operation_id="auth-refresh",
    summary="Trade a refresh token for a new pair; the old refresh token dies",
)
async def refresh(body: RefreshRequest, session: SessionDep, redis: RedisDep) -> TokenPair:
    return _token_pair(await rotate_refresh_token(session, redis, body.refresh_token))


@router.post(
    "/logout",
    status_code=204,
    response_class=Response,
    operation_id="auth-logout",
    summary="End this session: its access and refresh tokens stop working at once",
)
async def logout(authenticated: AccessToken, session: SessionDep, redis: RedisDep) -> Response:
    _, claims = authenticated
    await revoke_session(session, redis, claims.session_id, "logout")
    return Response(status_code=204)


@router.post(
    "/apple",
    response_model=TokenPair,
    status_code=200,
    operation_id="auth-apple",
    summary="Sign in with Apple (creates the account on first sign-in)",
)
async def sign_in_with_apple(
    body: AppleSignInRequest, session: SessionDep, request: Request
) -> TokenPair:
    profile = await apple.verify_identity_token(body.identity_token, body.nonce)
    if body.full_name:
        profile = replace(profile, full_name=body.full_name)
    user = await sign_in_external(session, profile)
    return await _open(session, user, request)


@router.get(
    "/oauth/{provider}/authorize",
    response_model=OAuthAuthorization,
    status_code=200,
    operation_id="auth-oauth-authorize",
    summary="Start an OAuth2 sign-in: where to send the person, and the state it carries",
)
async def oauth_authorize(
    provider: str,
    request: Request,
    redis: RedisDep,
    redirect_uri: Annotated[str | None, Query(max_length=2048, pattern=r"^https?://")] = None,
) -> OAuthAuthorization:
    oauth.provider_spec(provider)
    target = redirect_uri or str(request.url_for("auth-oauth-callback", provider=provider))
    url, state = await oauth.start_authorization(redis, provider, target)
    return OAuthAuthorization(authorization_url=url, state=state)


@router.get(
    "/oauth/{provider}/callback",
    response_model=TokenPair,
    status_code=200,
    operation_id="auth-oauth-callback",
    name="auth-oauth-callback",
    summary="Finish an OAuth2 sign-in with the provider's code and the state",
)
async def oauth_callback(
    provider: str,
    code: Annotated[str, Query(min_length=1, max_length=2048)],
    state: Annotated[str, Query(min_length=1, max_length=256)],
    request: Request,
    session: SessionDep,
    redis: RedisDep,
) -> TokenPair:
    profile = await oauth.finish_authorization(redis, provider, code, state)
    user = await sign_in_external(session, profile)
    return await _open(session, user, request)
