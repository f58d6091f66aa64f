"""The web console's files, served for the paths no API route matched."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send


def console_files(directory: Path) -> ASGIApp:
    files = StaticFiles(directory=directory, html=True)

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # No socket of ours lives here: refuse the handshake (uvicorn answers 403).
            await send({"type": "websocket.close", "code": 1008})
            return
        # Anything but reading a file is no path of ours: 404 in the envelope, where
        # StaticFiles alone would answer 405 to a POST on an unknown path.
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=404)
        await files(scope, receive, send)

    return serve
