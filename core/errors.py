"""Errors with a machine code, raised anywhere and answered in the API's error envelope."""

from __future__ import annotations


class AppError(Exception):
    """An expected failure: carries the HTTP status and the `code` of API.md."""

    status_code = 400
    code = "bad_request"
    # Where the refused value was, for a 422 (answered as a validation item).
    loc: tuple[str | int, ...] = ("body",)

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
        loc: tuple[str | int, ...] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if loc is not None:
            self.loc = loc
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class Unauthorized(AppError):
    status_code = 401
    code = "token_invalid"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"


class UpstreamError(AppError):
    status_code = 502
    code = "upstream_error"
