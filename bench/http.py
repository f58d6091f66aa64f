"""A lean HTTP/1.1 client for the bench's streams: one keep-alive connection per
concurrent stream, chunked bodies read as they come, nothing else.

httpx spent more CPU than the API it measured once streams ran in the hundreds
(a flood of 1,200 cost the bench ~7 s of CPU against the API's ~2.5 s), and
on two shared cores every cycle the client spends is taken from the system under
test and shows up as its latency. This is all the bench needs: GET, or POST a
JSON body, then read the status, headers and body pieces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson


class HTTPError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.body])

    async def lines(self) -> AsyncIterator[str]:
        """Body lines without their ending, as they arrive."""
        pending = b""
        async for piece in self.body:
            pending += piece
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode()
        if pending:
            yield pending.decode()


@dataclass
class Connection:
    """One keep-alive connection to one origin; requests on it run one after another."""

    url: str
    timeout: float = 120.0
    _streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = field(
        default=None, repr=False
    )

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None or self._streams[1].is_closing():
            parts = urlsplit(self.url)
            self._streams = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port or 80, limit=2**20),
                self.timeout,
            )
        return self._streams

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

    async def post(self, url: str, body: dict, headers: dict[str, str]) -> Response:
        """POST `body` as JSON; the response's body must be read before the next request."""
        payload = orjson.dumps(body)
        json_headers = {"Content-Type": "application/json", **headers}
        return await self._request("POST", url, json_headers, payload)

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        """GET `url`; the response's body must be read before the next request."""
        return await self._request("GET", url, headers, b"")

    async def _request(
        self, method: str, url: str, headers: dict[str, str], payload: bytes
    ) -> Response:
        parts = urlsplit(url)
        head = [
            f"{method} {parts.path} HTTP/1.1",
            f"Host: {parts.netloc}",
            *([f"Content-Length: {len(payload)}"] if payload else []),
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        for attempt in (1, 2):
            reader, writer = await self._open()
            try:
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                status_line = await asyncio.wait_for(reader.readline(), self.timeout)
                if not status_line:
                    raise ConnectionResetError("closed before the answer")
            except (ConnectionError, asyncio.IncompleteReadError):
                # A kept-alive connection the server closed meanwhile: once more on a new one.
                await self.close()
                if attempt == 2:
                    raise
                continue
            break
        status = int(status_line.split(b" ", 2)[1])
        answer_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        return Response(status, answer_headers, self._body(reader, answer_headers))

    async def _body(
        self, reader: asyncio.StreamReader, headers: dict[str, str]
    ) -> AsyncIterator[bytes]:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                yield await reader.readexactly(size)
                await reader.readexactly(2)
        elif "content-length" in headers:
            yield await reader.readexactly(int(headers["content-length"]))
        else:
            while piece := await reader.read(65536):
                yield piece
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
