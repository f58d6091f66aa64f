"""Every error answer in one shape.

Our routes answer `{"detail", "code"}`; the OpenAI-compatible routes answer
OpenAI's `{"error": {"message", "type", "code"}}` and the Anthropic-compatible ones
Anthropic's `{"type": "error", "error": {"type", "message"}}`, so SDKs raise the
right exception. Unexpected exceptions are logged with the request id and answered as
a plain 500 without internals; a lost database or Redis is a 503.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import orjson
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import AppError

log = logging.getLogger("switchboard.api")

# Routes that answer errors in OpenAI's shape (API.md, "Errors").
OPENAI_PATHS = (
    "/v1/chat/completions",
    "/v1/models",
    "/v1/plugin-api/chat/completions",
    "/api/plugin-api/chat/completions",
    "/v1/responses",
)
# Routes that answer errors in Anthropic's shape (API.md, "Anthropic- and
# Responses-compatible endpoints"): /v1/messages and /v1/messages/count_tokens.
ANTHROPIC_PATHS = ("/v1/messages",)

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "token_invalid",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    502: "upstream_error",
    503: "unavailable",
}

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

# Anthropic's error types by status. A spent monthly quota (402) is Anthropic's own
# `billing_error`, not a rate limit: waiting a minute and retrying does not help.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}

# A validation answer shows at most this much of the value it refused.
_EXCERPT_CHARS = 80
# Never echo a submitted secret back (passwords, keys) in a validation answer.
_SECRET_FIELDS = frozenset({"password", "api_key", "current_password", "new_password"})


def code_for_status(status_code: int) -> str:
    return _CODES_BY_STATUS.get(status_code, "error")


def uses_compat_shape(path: str) -> bool:
    return path.startswith(OPENAI_PATHS + ANTHROPIC_PATHS)


def error_body(path: str, status_code: int, code: str, detail: object) -> dict:
    """The envelope for `path`: OpenAI's or Anthropic's on the compatible routes, ours
    elsewhere."""
    if uses_compat_shape(path):
        message = detail if isinstance(detail, str) else "Invalid request: " + str(detail)
        if path.startswith(ANTHROPIC_PATHS):
            error_type = _ANTHROPIC_TYPES.get(status_code, "api_error")
            return {"type": "error", "error": {"type": error_type, "message": message}}
        return {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(status_code, "api_error"),
                "code": code,
                "param": None,
            }
        }
    return {"detail": detail, "code": code}


def validation_body(path: str, issues: list[dict[str, Any]]) -> tuple[int, dict]:
    """A refused input: 422 with FastAPI's item list on our routes, 400 on the compatible ones."""
    if uses_compat_shape(path):
        first = issues[0] if issues else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = first.get("msg", "Invalid request.")
        if where:
            message = f"{where}: {message}"
        body = error_body(path, 400, "validation_error", message)
        if not path.startswith(ANTHROPIC_PATHS):
            body["error"]["param"] = where or None
        return 400, body
    return 422, error_body(path, 422, "validation_error", issues)


def _excerpt(value: object) -> object:
    """What a validation item may show of the refused value: short, encodable, no internals."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"
    return None


def sanitize_issues(errors: Sequence[Any]) -> list[dict[str, Any]]:
    issues = []
    for err in errors:
        loc = [p if isinstance(p, int) else str(_excerpt(str(p))) for p in err.get("loc", ())]
        item: dict[str, Any] = {"loc": loc, "msg": str(err.get("msg", "")), "type": err.get("type")}
        if "input" in err and not _SECRET_FIELDS.intersection(map(str, loc)):
            if (shown := _excerpt(err["input"])) is not None:
                item["input"] = shown
        if ctx := err.get("ctx"):
            item["ctx"] = {k: _excerpt(v) if not isinstance(v, str) else v for k, v in ctx.items()}
        issues.append(item)
    return issues


def error_response(
    request: Request,
    status_code: int,
    code: str,
    detail: object,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_body(request.url.path, status_code, code, detail)
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)


async def _app_error(request: Request, exc: AppError) -> JSONResponse:
    if exc.status_code == 422:
        # A check of our own on a well-formed body answers like FastAPI's checks do.
        item = {"loc": list(exc.loc), "msg": exc.detail, "type": "value_error"}
        status, body = validation_body(request.url.path, [item])
        return JSONResponse(body, status_code=status, headers=exc.headers)
    return error_response(request, exc.status_code, exc.code, exc.detail, exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = code_for_status(exc.status_code)
    detail = exc.detail
    if not isinstance(detail, str) or not detail:
        detail = HTTPStatus(exc.status_code).phrase
    return error_response(request, exc.status_code, code, detail, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    status, body = validation_body(request.url.path, sanitize_issues(exc.errors()))
    return JSONResponse(body, status_code=status)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "dependency unavailable: %s",
        type(exc).__name__,
        extra={"request_id": getattr(request.state, "request_id", None)},
    )
    return error_response(
        request,
        503,
        "unavailable",
        "A backing service is unavailable; try again shortly.",
        {"Retry-After": "5"},
    )


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types a handler as taking any Exception; each of these takes only its own.
    app.add_exception_handler(AppError, _app_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    for exc_type in (
        OperationalError,
        PoolTimeoutError,
        InterfaceError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        ConnectionError,
        TimeoutError,
    ):
        app.add_exception_handler(exc_type, _unavailable)
    # Unexpected exceptions are answered by the UnhandledErrors middleware, not by a
    # handler here: Starlette re-raises after an `Exception` handler, and uvicorn then
    # closes the client's keep-alive connection.


class UnhandledErrors:
    """Answers an unexpected exception with a 500 and ends the request normally.

    Innermost of our middleware, so the answer still carries the request id. Not
    re-raised: the failure is logged here with its traceback, and the connection
    stays usable. One that breaks a response already under way cannot be answered;
    the response is cut off, which is all that HTTP allows.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception(
                "unhandled error", extra={"request_id": scope.get("state", {}).get("request_id")}
            )
            if started:
                raise
            body = error_body(scope["path"], 500, "internal_error", "Internal server error.")
            await send_json_error(send, 500, body)


async def send_json_error(
    send: Send, status: int, body: dict, headers: dict[str, str] | None = None
) -> None:
    """Answer from a pure ASGI middleware, before FastAPI (and its handlers) is reached."""
    payload = orjson.dumps(body)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
