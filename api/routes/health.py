"""Operations endpoints: liveness, readiness (PostgreSQL, Redis, broker) and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text

from core.celery_app import celery_app
from core.db import async_engine
from core.redis import redis_client

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT = 3.0


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ok"])
    checks: dict[str, str] = Field(examples=[{"postgres": "ok", "redis": "ok", "broker": "ok"}])


async def _check_postgres() -> None:
    async with async_engine().connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _check_redis() -> None:
    await redis_client().ping()


def _check_broker_sync() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT)


async def _check_broker() -> None:
    # The broker may be a different server than REDIS_URL's; kombu's client is sync.
    await asyncio.to_thread(_check_broker_sync)


async def _run(check) -> str:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    # Any failure means "not ready": it is reported by name, never hidden.
    except Exception as exc:
        return f"down: {type(exc).__name__}"
    return "ok"


@router.get("/healthz", response_model=Health, operation_id="operations-healthz")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    operation_id="operations-readyz",
    responses={503: {"model": Readiness, "description": "A dependency is down"}},
)
async def readyz() -> Response:
    names = ("postgres", "redis", "broker")
    results = await asyncio.gather(_run(_check_postgres), _run(_check_redis), _run(_check_broker))
    checks = dict(zip(names, results, strict=True))
    ready = all(result == "ok" for result in results)
    body = Readiness(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", operation_id="operations-metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
