"""A fake Linux.do Connect: OAuth2 authorization-code flow and its user-info endpoint.

`/oauth2/authorize` plays the person who consents: it redirects to the
`redirect_uri` with a one-time code for `FakeLinuxDo.profile`. The token
endpoint insists on HTTP Basic client authentication and the same redirect URI,
as a real authorization server does.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from tests.fakes.server import serve_in_thread

CLIENT_ID = "switchboard-test-client"
CLIENT_SECRET = "switchboard-test-secret"


def linuxdo_profile(user_id: int = 4242, **overrides: Any) -> dict[str, Any]:
    """A user-info answer shaped like connect.linux.do's `/api/user`."""
    profile = {
        "id": user_id,
        "sub": str(user_id),
        "username": f"neo{user_id}",
        "login": f"neo{user_id}",
        "name": "Thomas Anderson",
        "email": f"neo{user_id}@linux.do.example",
        "avatar_template": "/user_avatar/linux.do/neo/{size}/1.png",
        "avatar_url": "https://linux.do/user_avatar/linux.do/neo/288/1.png",
        "active": True,
        "trust_level": 2,
        "silenced": False,
        "external_ids": None,
        "api_key": "linuxdo-secret-api-key-never-store",
    }
    profile.update(overrides)
    return profile


class FakeLinuxDo:
    def __init__(self) -> None:
        self.profile: dict[str, Any] = linuxdo_profile()
        self.fail_token_with: int | None = None
        self.codes: dict[str, tuple[str, dict[str, Any]]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.base_url = ""

    def reset(self) -> None:
        self.profile = linuxdo_profile()
        self.fail_token_with = None

    async def authorize(self, request: Request) -> Any:
        query = request.query_params
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = (query["redirect_uri"], dict(self.profile))
        target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        return RedirectResponse(target, status_code=302)

    async def token(self, request: Request) -> JSONResponse:
        if self.fail_token_with is not None:
            return JSONResponse({"error": "server_error"}, status_code=self.fail_token_with)
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = await request.form()
        issued = self.codes.pop(str(form.get("code")), None)
        if (
            form.get("grant_type") != "authorization_code"
            or issued is None
            or issued[0] != form.get("redirect_uri")
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access_token = secrets.token_urlsafe(24)
        self.tokens[access_token] = issued[1]
        return JSONResponse(
            {"access_token": access_token, "token_type": "bearer", "expires_in": 3600}
        )

    async def user(self, request: Request) -> JSONResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        profile = self.tokens.get(token)
        if profile is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse(profile)


@pytest.fixture(scope="session")
def fake_linuxdo_server() -> Iterator[FakeLinuxDo]:
    fake = FakeLinuxDo()
    app = Starlette(
        routes=[
            Route("/oauth2/authorize", fake.authorize),
            Route("/oauth2/token", fake.token, methods=["POST"]),
            Route("/api/user", fake.user),
        ]
    )
    with serve_in_thread(app) as base_url:
        fake.base_url = base_url
        yield fake


@pytest.fixture
def fake_linuxdo(fake_linuxdo_server: FakeLinuxDo) -> Iterator[FakeLinuxDo]:
    fake_linuxdo_server.reset()
    yield fake_linuxdo_server
    fake_linuxdo_server.reset()


@pytest.fixture(scope="session")
def linuxdo_env(fake_linuxdo_server: FakeLinuxDo) -> dict[str, str]:
    base = fake_linuxdo_server.base_url
    return {
        "LINUXDO_CLIENT_ID": CLIENT_ID,
        "LINUXDO_CLIENT_SECRET": CLIENT_SECRET,
        "LINUXDO_AUTHORIZE_URL": f"{base}/oauth2/authorize",
        "LINUXDO_TOKEN_URL": f"{base}/oauth2/token",
        "LINUXDO_USERINFO_URL": f"{base}/api/user",
    }
