"""A fake plug-in-api speaking the upstream routes of API.md's "Plug-in API proxy" table.

It keeps users, their keys and their linked accounts, answers each user's
routes only for that user's key, and records every request it receives,
`Authorization` header included. Knobs make it slow, failing or absent: it
listens on a port fixed for the session, so a test can stop it and start it
again while the API and the worker keep pointing at it.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cli.embedded import free_port
from tests.fakes.llm import openai_answer
from tests.fakes.openai_protocol import expected_tokens, knobs_of, last_user_text
from tests.fakes.server import serve_in_thread

ADMIN_KEY = "plugin-admin-key-for-tests-0123456789"


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None
    body: Any
    query: dict[str, str]


@dataclass
class FakeUser:
    user_id: str
    api_key: str
    name: str
    prefer_shared: int
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)


class FakePluginApi:
    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._running: ExitStack | None = None
        self.app = Starlette(routes=self._routes())
        self.reset()

    def reset(self) -> None:
        self.seen: list[Seen] = []
        self.users: dict[str, FakeUser] = {}
        # POST /api/users answers 500 this many times before it works again.
        self.create_failures = 0
        self.create_delay = 0.0
        # (method, path) -> status answered instead of the real thing.
        self.fail: dict[tuple[str, str], int] = {}

    def start(self) -> None:
        if self._running is None:
            stack = ExitStack()
            stack.enter_context(serve_in_thread(self.app, self.port))
            self._running = stack

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
            self._running = None

    def add_user(self, name: str, prefer_shared: int = 0) -> FakeUser:
        user = FakeUser(
            user_id=str(uuid.uuid4()),
            api_key=f"sk-{secrets.token_hex(24)}",
            name=name,
            prefer_shared=prefer_shared,
        )
        self.users[user.api_key] = user
        return user

    def user_named(self, name: str) -> FakeUser:
        return next(user for user in self.users.values() if user.name == name)

    def seen_at(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    def link_account(self, user: FakeUser, is_shared: int = 0) -> dict[str, Any]:
        cookie_id = secrets.token_hex(8)
        account = {
            "cookie_id": cookie_id,
            "user_id": user.user_id,
            "is_shared": is_shared,
            "status": 1,
            "expires_at": 1732201200000,
            "created_at": "2025-11-21T14:00:00.000Z",
        }
        user.accounts[cookie_id] = account
        return account

    # --- the routes -------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            Route("/api/users", self.create_user, methods=["POST"]),
            Route("/api/users/{user_id}/preference", self.preference, methods=["PUT"]),
            Route("/api/oauth/authorize", self.oauth_authorize, methods=["POST"]),
            Route("/api/oauth/callback/manual", self.oauth_callback, methods=["POST"]),
            Route("/api/accounts", self.accounts),
            Route("/api/accounts/{cookie_id}", self.account, methods=["GET", "DELETE"]),
            Route("/api/accounts/{cookie_id}/status", self.account_status, methods=["PUT"]),
            Route("/api/accounts/{cookie_id}/quotas", self.account_quotas),
            Route("/api/quotas/user", self.user_quotas),
            Route("/api/quotas/shared-pool", self.shared_pool),
            Route("/api/quotas/consumption", self.consumption),
            Route("/v1/models", self.models),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
        ]

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        body = await request.json() if raw else None
        self.seen.append(
            Seen(
                request.method,
                request.url.path,
                request.headers.get("authorization"),
                body,
                dict(request.query_params),
            )
        )
        return body

    def _forced(self, request: Request) -> JSONResponse | None:
        status = self.fail.get((request.method, request.url.path))
        if status is None:
            return None
        return JSONResponse({"success": False, "error": f"forced {status}"}, status_code=status)

    async def _caller(self, request: Request) -> tuple[FakeUser | JSONResponse, Any]:
        """The user whose key came with the request, or the answer that refuses it."""
        body = await self._record(request)
        if forced := self._forced(request):
            return forced, body
        key = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        user = self.users.get(key)
        if user is None:
            return JSONResponse({"success": False, "error": "bad key"}, 401), body
        return user, body

    def _owned(self, user: FakeUser, cookie_id: str) -> dict[str, Any] | None:
        return user.accounts.get(cookie_id)

    @staticmethod
    def _missing() -> JSONResponse:
        return JSONResponse({"success": False, "error": "账号不存在"}, status_code=404)

    async def create_user(self, request: Request) -> JSONResponse:
        body = await self._record(request)
        if request.headers.get("authorization") != f"Bearer {ADMIN_KEY}":
            return JSONResponse({"success": False, "error": "admin key required"}, 401)
        if self.create_failures > 0:
            self.create_failures -= 1
            return JSONResponse({"success": False, "error": "database locked"}, 500)
        if self.create_delay:
            await asyncio.sleep(self.create_delay)
        user = self.add_user(body["name"], body.get("prefer_shared", 0))
        return JSONResponse(
            {
                "success": True,
                "message": "用户创建成功",
                "data": {"user_id": user.user_id, "api_key": user.api_key, "name": user.name},
            }
        )

    async def preference(self, request: Request) -> JSONResponse:
        user, body = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        if request.path_params["user_id"] != user.user_id:
            return JSONResponse({"success": False, "error": "not your user"}, 403)
        user.prefer_shared = body["prefer_shared"]
        return JSONResponse(
            {
                "success": True,
                "data": {"user_id": user.user_id, "prefer_shared": user.prefer_shared},
            }
        )

    async def oauth_authorize(self, request: Request) -> JSONResponse:
        user, body = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        state = f"{user.user_id}:{body['is_shared']}"
        return JSONResponse(
            {
                "success": True,
                "data": {
                    "auth_url": f"https://accounts.example/o/oauth2?state={state}",
                    "state": state,
                },
            }
        )

    async def oauth_callback(self, request: Request) -> JSONResponse:
        user, body = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        if "code=" not in body["callback_url"]:
            return JSONResponse({"success": False, "error": "no code in callback_url"}, 400)
        return JSONResponse({"success": True, "data": self.link_account(user)})

    async def accounts(self, request: Request) -> JSONResponse:
        user, _ = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        return JSONResponse({"success": True, "data": list(user.accounts.values())})

    async def account(self, request: Request) -> JSONResponse:
        user, _ = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        cookie_id = request.path_params["cookie_id"]
        account = self._owned(user, cookie_id)
        if account is None:
            return self._missing()
        if request.method == "DELETE":
            del user.accounts[cookie_id]
            return JSONResponse({"success": True, "message": "账号已删除"})
        return JSONResponse({"success": True, "data": account})

    async def account_status(self, request: Request) -> JSONResponse:
        user, body = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        account = self._owned(user, request.path_params["cookie_id"])
        if account is None:
            return self._missing()
        account["status"] = body["status"]
        return JSONResponse(
            {"success": True, "data": {"cookie_id": account["cookie_id"], "status": body["status"]}}
        )

    async def account_quotas(self, request: Request) -> JSONResponse:
        user, _ = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        account = self._owned(user, request.path_params["cookie_id"])
        if account is None:
            return self._missing()
        return JSONResponse(
            {
                "success": True,
                "data": [
                    {
                        "cookie_id": account["cookie_id"],
                        "model_name": "gemini-3-pro-high",
                        "quota": "0.9800",
                    }
                ],
            }
        )

    async def user_quotas(self, request: Request) -> JSONResponse:
        user, _ = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        return JSONResponse(
            {
                "success": True,
                "data": [
                    {"user_id": user.user_id, "model_name": "gemini-3-pro-high", "quota": "2.0"}
                ],
            }
        )

    async def shared_pool(self, request: Request) -> JSONResponse:
        user, _ = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        return JSONResponse(
            {"success": True, "data": {"accounts": 3, "requested_by": user.user_id}}
        )

    async def consumption(self, request: Request) -> JSONResponse:
        user, _ = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        return JSONResponse(
            {
                "success": True,
                "data": {"user_id": user.user_id, "query": dict(request.query_params)},
            }
        )

    async def models(self, request: Request) -> JSONResponse:
        user, _ = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": "gemini-3-pro-high", "object": "model", "owned_by": user.user_id}],
            }
        )

    async def chat_completions(self, request: Request) -> Response:
        """OpenAI's protocol, answered like the fake LLM (the same knobs), for a known key."""
        user, body = await self._caller(request)
        if isinstance(user, JSONResponse):
            return user
        last_user = last_user_text(body)
        return await openai_answer(body, knobs_of(last_user), expected_tokens(last_user))


@pytest.fixture(scope="session")
def fake_plugin_api_server() -> Iterator[FakePluginApi]:
    fake = FakePluginApi()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_plugin_api(fake_plugin_api_server: FakePluginApi) -> Iterator[FakePluginApi]:
    fake_plugin_api_server.reset()
    fake_plugin_api_server.start()
    yield fake_plugin_api_server
    fake_plugin_api_server.start()
    fake_plugin_api_server.reset()


@pytest.fixture(scope="session")
def plugin_api_env(fake_plugin_api_server: FakePluginApi) -> dict[str, str]:
    return {
        "PLUGIN_API_BASE_URL": fake_plugin_api_server.base_url,
        "PLUGIN_API_ADMIN_KEY": ADMIN_KEY,
        "PLUGIN_API_TIMEOUT_SECONDS": "5",
        # Retries within seconds, so a test sees both a recovery and a give-up.
        "PLUGIN_PROVISION_MAX_ATTEMPTS": "5",
        "PLUGIN_PROVISION_BACKOFF_SECONDS": "0.3",
        "PLUGIN_PROVISION_BACKOFF_MAX_SECONDS": "1.5",
        # Beat does not run in tests; a test sends the re-queue job itself.
        "PLUGIN_PROVISION_STUCK_SECONDS": "0",
    }
