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

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# More proxies than any real deployment chains (CDN, load balancer, ingress, sidecar).
_MAX_HOPS = 8

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

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in net for net in self._trusted)

    def _apply_forwarded(self, scope: Scope, headers: dict[bytes, bytes]) -> None:
        client = scope.get("client")
        peer = parse_ip(client[0]) if client else None
        if peer is None or not self._is_trusted(peer):
            return
        if proto := headers.get(b"x-forwarded-proto"):
            scheme = proto.decode("latin-1").split(",")[0].strip().lower()
            if scheme in ("http", "https"):
                if scope["type"] == "websocket":
                    scheme = {"http": "ws", "https": "wss"}[scheme]
                scope["scheme"] = scheme
        if forwarded_for := headers.get(b"x-forwarded-for"):
            if (address := self._forwarded_client(forwarded_for)) is not None:
                scope["client"] = (str(address), 0)

    def _forwarded_client(self, forwarded_for: bytes) -> IPAddress | None:
        """The nearest address in the chain that is not one of our proxies, or None.

        Read from the right: each trusted proxy appends the peer it saw, while everything
        left of our outermost proxy is whatever the client chose to send. An entry that is
        not an IP address ends the walk with None (the peer's address stays): the value is
        stored (`auth_sessions.ip_address`) and keys the login limits, so it must be a
        real, bounded address, never client text.
        """
        address = None
        # Bounded: a client could send thousands of trusted-looking entries; the leftover
        # head of the split is then no address and the walk stops there.
        for entry in reversed(forwarded_for.decode("latin-1").rsplit(",", _MAX_HOPS)):
            address = parse_ip(entry)
            if address is None or not self._is_trusted(address):
                return address
        return address

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


def parse_ip(text: str) -> IPAddress | None:
    """An address as proxies write it (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:443`, `fe80::1%eth0`),
    without port or zone, IPv4-mapped IPv6 as IPv4; None for anything else."""
    text = text.strip()
    if text.startswith("["):
        text, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    # A zone names an interface of the proxy's host, meaningless here.
    text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address
