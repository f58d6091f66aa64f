"""Send Celery tasks by name without blocking the event loop.

`send_task` publishes synchronously (a Redis round trip plus serialisation),
so it runs in a worker thread. The API never imports `workers/`.
"""

from __future__ import annotations

from typing import Any

from anyio import to_thread

from core.celery_app import celery_app


async def enqueue(task_name: str, *args: Any, **options: Any) -> None:
    """Queue `task_name(*args)`; call it only after the transaction that made its rows commits."""
    await to_thread.run_sync(lambda: celery_app.send_task(task_name, args=args, **options))
