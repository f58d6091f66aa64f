"""The one pooled HTTP client to plug-in-api, and how its answers become ours.

Each call carries the caller's own plug-in-api key. Upstream 4xx keep their
status (the message and body are passed on in our envelope), upstream 5xx
become 502 `upstream_error`, and an unreachable or slow plug-in-api 503
`unavailable`. Neither the key nor the upstream URL with its query ever reaches
a log line.
"""

from __future__ import annotations

import logging
from functools import cache
from http import HTTPStatus
from typing import Any

import httpx
from fastapi import Response
from fastapi.responses import JSONResponse

from api.errors import code_for_status
from core.config import settings
from core.errors import Unavailable, UpstreamError

log = logging.getLogger("switchboard.plugin_api")


@cache
def plugin_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.plugin_api_base_url,
        timeout=httpx.Timeout(settings.plugin_api_timeout_seconds, connect=5.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        follow_redirects=False,
    )


async def close_plugin_client() -> None:
    if plugin_client.cache_info().currsize:
        await plugin_client().aclose()
        plugin_client.cache_clear()


async def call_plugin_api(
    method: str,
    path: str,
    api_key: str,
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
) -> Response:
    """Send one request upstream with `api_key` and answer what the caller should see."""
    try:
        upstream = await plugin_client().request(
            method,
            path,
            json=json,
            params={k: v for k, v in (params or {}).items() if v is not None},
            headers={"Authorization": f"Bearer {api_key}"},
        )
    except (httpx.ConnectError, httpx.TimeoutException) as error:
        log.warning("plug-in-api unreachable: %s %s: %s", method, path, type(error).__name__)
        raise Unavailable(
            "The plug-in API is unreachable; try again shortly.", headers={"Retry-After": "5"}
        ) from None
    except httpx.TransportError as error:
        log.warning("plug-in-api broke the exchange: %s %s: %s", method, path, type(error).__name__)
        raise UpstreamError("The plug-in API failed to answer.") from None
    return _translate(method, path, upstream)


def _translate(method: str, path: str, upstream: httpx.Response) -> Response:
    status = upstream.status_code
    # A 401 upstream means our stored key was refused, not the caller's token: passing
    # it on would make clients sign their user out.
    if status >= 500 or status == 401:
        log.warning("plug-in-api answered %s to %s %s", status, method, path)
        raise UpstreamError("The plug-in API failed to answer the request.")
    if status >= 400:
        body = _body(upstream)
        return JSONResponse(
            {
                "detail": _message(body) or HTTPStatus(status).phrase,
                "code": code_for_status(status),
                "upstream": body,
            },
            status_code=status,
        )
    return Response(
        content=upstream.content,
        status_code=status,
        media_type=upstream.headers.get("content-type", "application/json"),
    )


def _body(upstream: httpx.Response) -> Any:
    try:
        return upstream.json()
    except ValueError:
        return upstream.text


def _message(body: Any) -> str | None:
    """plug-in-api says what went wrong in `message`, `error` or `detail`."""
    if isinstance(body, str):
        return body[:500] or None
    if isinstance(body, dict):
        for field in ("message", "error", "detail"):
            value = body.get(field)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return value["message"]
    return None
