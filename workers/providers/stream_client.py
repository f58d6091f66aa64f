"""The providers' streaming HTTP client: aiohttp on the chat worker's event loop.

aiohttp rather than httpx: its response parser is C (llhttp) and its body arrives as
the socket's chunks, where httpx's sync client ran h11 in Python per chunk on a
thread per stream; that per-token cost led the worker's profile (README, "Benchmark").
Timeouts, no redirects and the pinned address of a user endpoint are as the sync
client's (workers/providers/base.py).
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from core.config import settings
from workers.event_loop import loop_local
from workers.providers.base import HttpRequest, ProviderCall, status_error, transport_error
from workers.providers.sse import EndOfStream, SseDecoder

# Between-chunk read timeout: a stalled upstream fails the generation instead of hanging it.
TIMEOUT = aiohttp.ClientTimeout(
    total=None, connect=10.0, sock_read=settings.provider_read_timeout_seconds
)
# An error answer's body is read for its message, never more than this.
ERROR_BODY_BYTES = 64 * 1024


@loop_local
def http_session() -> aiohttp.ClientSession:
    # No limit of our own on connections: admission control bounds the streams.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, timeout=TIMEOUT, trust_env=False)


async def sse_stream(
    request: HttpRequest,
    call: ProviderCall,
    provider: str,
    on_event: Callable[[str | None, bytes], None],
) -> None:
    """Send `request` and hand each event of the streamed answer to `on_event` as its
    bytes arrive, synchronously: a token costs one read of the socket, no coroutine of
    its own. What `on_event` raises ends the stream and passes through (EndOfStream
    ends it quietly); the answer's failures come as ProviderError."""
    try:
        async with http_session().post(
            request.url,
            data=request.body,
            headers=request.headers,
            allow_redirects=False,
            server_hostname=request.server_hostname,
        ) as response:
            if response.status >= 300:
                body = await response.content.read(ERROR_BODY_BYTES)
                raise status_error(response.status, body, call, provider)
            decoder = SseDecoder()
            async for chunk in response.content.iter_any():
                for event, data in decoder.feed(chunk):
                    on_event(event, data)
            for event, data in decoder.end():
                on_event(event, data)
    except EndOfStream:
        return
    except TimeoutError as exc:
        raise transport_error("timeout", call, provider) from exc
    except aiohttp.ClientConnectorError as exc:
        raise transport_error("connect", call, provider) from exc
    except aiohttp.ClientError as exc:
        raise transport_error("broken", call, provider) from exc
