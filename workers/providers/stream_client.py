"""A provider's streamed answer, its failures as ProviderError: the chat worker's side of
workers/providers/sse_transport.py, whose client hands each event on from the socket's
callback. Its timeouts are the sync client's (workers/providers/base.py)."""

from __future__ import annotations

from collections.abc import Callable

from core.config import settings
from workers.providers.base import HttpRequest, ProviderCall, status_error, transport_error
from workers.providers.sse_transport import HttpStatusError, TransportFailure, post_sse

CONNECT_TIMEOUT_SECONDS = 10.0


async def sse_stream(
    request: HttpRequest,
    call: ProviderCall,
    provider: str,
    on_event: Callable[[str | None, bytes], None],
) -> None:
    """Send `request` and hand each event of the streamed answer to `on_event` as its
    bytes arrive, synchronously: a token costs one read of the socket, no coroutine of
    its own. What `on_event` raises ends the stream and passes through (EndOfStream
    ends it quietly)."""
    try:
        await post_sse(
            request,
            on_event,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=settings.provider_read_timeout_seconds,
        )
    except HttpStatusError as exc:
        raise status_error(exc.status, exc.body, call, provider) from exc
    except TransportFailure as exc:
        raise transport_error(exc.kind, call, provider) from exc
