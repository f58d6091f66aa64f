"""The "user created" extension point.

Every sign-up path (password, Apple, OAuth) calls `user_created` once, after the
transaction that created the user has committed. Features that must react to a
new user (plug-in-api provisioning) subscribe at start-up instead of being
copied into each sign-up path.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

UserCreatedHook = Callable[[uuid.UUID], Awaitable[None]]

_subscribers: list[UserCreatedHook] = []


def subscribe(hook: UserCreatedHook) -> None:
    if hook not in _subscribers:
        _subscribers.append(hook)


async def user_created(user_id: uuid.UUID) -> None:
    for hook in _subscribers:
        await hook(user_id)
