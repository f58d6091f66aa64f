"""Every error answer in one shape.

Our routes answer `{"detail", "code"}`; the OpenAI-compatible routes answer
OpenAI's `{"error": {"message", "type", "code"}}` so SDKs raise the right
exception. Unexpected exceptions are logged with the request id and answered as
a plain 500 without internals; a lost database or Redis is a 503.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from core.errors import AppError

log = logging.getLogger("switchboard.api")

OPENAI_PATHS = ("/v1/chat/completions", "/v1/models", "/v1/plugin-api/chat/completions")

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "token_invalid",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
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
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def code_for_status(status_code: int) -> str:
    return _CODES_BY_STATUS.get(status_code, "error")


def wants_openai_shape(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PATHS)


def error_body(path: str, status_code: int, code: str, detail: object) -> dict:
    """The envelope for `path`: OpenAI's on the OpenAI-compatible routes, ours elsewhere."""
    if path.startswith(OPENAI_PATHS):
        message = detail if isinstance(detail, str) else "Invalid request: " + str(detail)
        return {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(status_code, "api_error"),
                "code": code,
                "param": None,
            }
        }
    return {"detail": detail, "code": code}


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
    return error_response(request, exc.status_code, exc.code, exc.detail, exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = code_for_status(exc.status_code)
    detail = exc.detail
    if not isinstance(detail, str) or not detail:
        detail = HTTPStatus(exc.status_code).phrase
    return error_response(request, exc.status_code, code, detail, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {k: v for k, v in err.items() if k in ("type", "loc", "msg", "input", "ctx")}
        for err in exc.errors()
    ]
    # Never echo a submitted secret back (passwords, keys) in a validation answer.
    for err in errors:
        if any(
            part in ("password", "api_key", "current_password", "new_password")
            for part in err.get("loc", ())
        ):
            err.pop("input", None)
    if wants_openai_shape(request):
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return error_response(request, 400, "validation_error", message)
    return error_response(request, 422, "validation_error", errors)


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


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception(
        "unhandled error", extra={"request_id": getattr(request.state, "request_id", None)}
    )
    return error_response(request, 500, "internal_error", "Internal server error.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
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
    app.add_exception_handler(Exception, _unexpected)


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
