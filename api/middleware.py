"""Request context as one pure ASGI middleware (no per-request task, streaming-safe).

It assigns the request id, resolves the client address and scheme (forwarded
headers honoured only from trusted proxies), enforces HTTPS in production,
and records the access log line and Prometheus metrics by route template.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from functools import cached_property

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import send_json_error
from core.config import Settings

log = logging.getLogger("switchboard.access")

REQUESTS = Counter(
    "switchboard_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
LATENCY = Histogram(
    "switchboard_http_request_duration_seconds",
    "Time to the end of the response",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

# Load balancers probe these over plain HTTP.
_HTTPS_EXEMPT = ("/healthz", "/readyz")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    @cached_property
    def _trusted(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p, strict=False) for p in self.settings.trusted_proxies]

    def _is_trusted(self, host: str | None) -> bool:
        if not host:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._trusted)

    def _apply_forwarded(self, scope: Scope, headers: dict[bytes, bytes]) -> None:
        client = scope.get("client")
        if not self._is_trusted(client[0] if client else None):
            return
        if proto := headers.get(b"x-forwarded-proto"):
            scheme = proto.decode("latin-1").split(",")[0].strip().lower()
            if scheme in ("http", "https"):
                if scope["type"] == "websocket":
                    scheme = {"http": "ws", "https": "wss"}[scheme]
                scope["scheme"] = scheme
        if forwarded_for := headers.get(b"x-forwarded-for"):
            scope["client"] = (forwarded_for.decode("latin-1").split(",")[0].strip(), 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        self._apply_forwarded(scope, headers)

        if (
            self.settings.environment == "production"
            and scope["scheme"] not in ("https", "wss")
            and not scope["path"].startswith(_HTTPS_EXEMPT)
        ):
            await _send_https_required(scope, send, request_id)
            return

        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                elapsed = time.perf_counter() - started
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                REQUESTS.labels(scope["method"], template, str(status)).inc()
                LATENCY.labels(scope["method"], template).observe(elapsed)
                log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "request_id": request_id,
                        "route": template,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": (scope.get("client") or ("-",))[0],
                    },
                )


async def _send_https_required(scope: Scope, send: Send, request_id: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send_json_error(
        send,
        403,
        {"detail": "HTTPS is required.", "code": "https_required"},
        {"X-Request-ID": request_id},
    )
