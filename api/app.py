"""The application factory: `uvicorn api.app:create_app --factory`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from anyio import to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.compat import ai_hub, api_v1_auth, chat_backend, user_system
from api.console import console_files
from api.errors import UnhandledErrors, install_error_handlers
from api.input_guard import InputGuard
from api.middleware import RequestContextMiddleware
from api.openapi import install_openapi
from api.plugin_accounts import start_provisioning
from api.plugin_client import close_plugin_client
from api.routes import (
    admin,
    attachments,
    auth,
    conversations,
    developer,
    generations,
    health,
    messages,
    model_configs,
    openai,
    plugin_api,
    responses,
    subscriptions,
    user,
)
from api.shed import ShedGuard
from core.config import Settings, settings
from core.db import async_engine
from core.logging import configure_logging
from core.redis import blocking_redis, redis_client
from core.security import dummy_password_hash
from core.user_events import subscribe

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

DESCRIPTION = """
Switchboard is a chat backend for AI apps: accounts and sign-in, conversations
streamed over SSE and WebSocket, an OpenAI-compatible API with API keys,
quotas and rate limits, and a plug-in-api proxy.

Authenticate with `Authorization: Bearer <token>`: a JWT access token from
`/v1/auth/login`, or on routes that say so, a developer API key (`sk-sb-...`).
Every error answers `{"detail": ..., "code": ...}`; the OpenAI-compatible
routes answer OpenAI's `{"error": {...}}` shape.
"""

TAGS = [
    {"name": "auth", "description": "Registration, sign-in, tokens and sessions."},
    {"name": "user", "description": "The signed-in user's profile, plan and chat defaults."},
    {"name": "model-configs", "description": "A user's own OpenAI-compatible endpoints."},
    {"name": "conversations", "description": "Conversations, messages and streaming chat."},
    {"name": "generations", "description": "Status, resume and cancel of a generation."},
    {"name": "openai", "description": "OpenAI-compatible API (API key or JWT)."},
    {"name": "developer", "description": "API keys and usage."},
    {"name": "plugin-api", "description": "The user's plug-in-api account, proxied."},
    {
        "name": "subscriptions",
        "description": "Plans on offer, the plan a user holds, and redemption codes.",
    },
    {"name": "admin", "description": "Superuser operations."},
    {"name": "operations", "description": "Health, readiness and metrics."},
    {
        "name": "compatibility",
        "description": "Earlier API documents' paths and fields, over the same services.",
    },
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Before the first sign-in, so an unknown email never costs more than a known one.
    await to_thread.run_sync(dummy_password_hash)
    yield
    await close_plugin_client()
    await redis_client().aclose()
    await blocking_redis().aclose()
    await async_engine().dispose()


def create_app(app_settings: Settings = settings) -> FastAPI:
    configure_logging()
    app = FastAPI(
        title="Switchboard",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app)
    # Innermost: an unexpected exception is answered where the request id is still known.
    app.add_middleware(UnhandledErrors)
    # Input rules and body limits before any route reads the body, inside the shed guard
    # so a flood is refused without reading bodies at all.
    app.add_middleware(InputGuard, settings=app_settings)
    # Inside the request context (request id, access log) and CORS, so a shed answer
    # carries their headers, in front of everything else.
    app.add_middleware(ShedGuard)
    if app_settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=app_settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ],
        )
    app.add_middleware(RequestContextMiddleware, settings=app_settings)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(user.router)
    app.include_router(admin.router)
    app.include_router(subscriptions.router)
    app.include_router(plugin_api.router)
    app.include_router(model_configs.router)
    app.include_router(conversations.router)
    app.include_router(attachments.router)
    app.include_router(generations.router)
    app.include_router(openai.router)
    app.include_router(messages.router)
    app.include_router(responses.router)
    app.include_router(developer.router)
    app.include_router(api_v1_auth.router)
    app.include_router(user_system.router)
    app.include_router(ai_hub.router)
    app.include_router(chat_backend.router)
    # The web console answers only what no route matched, so an API path keeps its
    # 405 for a wrong method and an unknown path its 404 in the envelope.
    app.router.default = console_files(WEB_DIR)
    # Paths are exact: a redirect to the slash-less path would also turn `/{id}/..%2F`
    # into a 307 towards `/{id}/..` instead of a 404.
    app.router.redirect_slashes = False
    subscribe(start_provisioning)
    return app
