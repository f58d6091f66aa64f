"""Concurrent first writes of a user's chat defaults through the real API."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from core.db import worker_session
from models import UserAIConfig


async def test_concurrent_first_writes_all_succeed_and_leave_one_row(client, make_user):
    user = make_user(plan="pro")
    bodies = [
        {
            "default_model": "deepseek-chat" if index % 2 else "moonshot-v1-32k",
            "model_config_id": None,
            "system_prompt": f"Prompt number {index}.",
            "temperature": index / 10,
            "reasoning_effort": ("none", "low", "medium", "high", None)[index % 5],
        }
        for index in range(10)
    ]

    answers = await asyncio.gather(
        *(client.put("/v1/user/ai-config", json=body, headers=user.headers) for body in bodies)
    )

    assert [answer.status_code for answer in answers] == [200] * 10, [a.text for a in answers]
    # Each write answers what it wrote, not a neighbour's row.
    assert [answer.json() for answer in answers] == bodies
    with worker_session() as session:
        rows = session.scalar(
            select(func.count()).select_from(UserAIConfig).where(UserAIConfig.user_id == user.id)
        )
    assert rows == 1
    final = await client.get("/v1/user/ai-config", headers=user.headers)
    assert final.json() in bodies


async def test_a_later_write_replaces_every_field(client, make_user):
    user = make_user(plan="pro")
    first = {
        "default_model": "deepseek-chat",
        "model_config_id": None,
        "system_prompt": "Be brief.",
        "temperature": 0.3,
        "reasoning_effort": "high",
    }
    assert (await client.put("/v1/user/ai-config", json=first, headers=user.headers)).is_success
    with worker_session() as session:
        created_at, first_updated_at = session.execute(
            select(UserAIConfig.created_at, UserAIConfig.updated_at)
        ).one()

    second = await client.put(
        "/v1/user/ai-config", json={"system_prompt": "Be thorough."}, headers=user.headers
    )

    expected = {
        "default_model": None,
        "model_config_id": None,
        "system_prompt": "Be thorough.",
        "temperature": None,
        "reasoning_effort": None,
    }
    assert second.status_code == 200 and second.json() == expected
    assert (await client.get("/v1/user/ai-config", headers=user.headers)).json() == expected
    with worker_session() as session:
        row = session.scalars(select(UserAIConfig)).one()
    assert row.created_at == created_at
    assert row.updated_at > first_updated_at
