"""Publish Celery tasks from the event loop, without a thread hop.

`celery_app.send_task` publishes synchronously (a blocking Redis round trip),
so it cannot run on the event loop. Instead the message is built with Celery's
own protocol-2 builder (`amqp.as_task_v2`) and wrapped in the envelope kombu's
Redis transport stores (base64 JSON body, anonymous exchange with the queue as
routing key, a delivery tag for its ack emulation), then LPUSHed by the async
client onto the queue's list, which the workers BRPOP: they consume it like any
message of `send_task`. Only the default priority is used, so the list is named
after the queue. No `task-sent` event is published (and chat workers send no
task events at all, see celeryconfig.py). The API never imports `workers/`.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from core.celery_app import celery_app
from core.redis import broker_redis

# Celery's default for a task message without callbacks, chains or chords.
NO_CANVAS = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True, slots=True)
class TaskMessage:
    queue: str
    payload: str


@cache
def queue_of(task_name: str) -> str:
    """The queue `task_routes` sends `task_name` to."""
    return celery_app.amqp.router.route({}, task_name)["queue"].name


def task_message(task_name: str, args: tuple[Any, ...], argsrepr: str | None = None) -> TaskMessage:
    """`task_name(*args)` as kombu's Redis transport stores it. `argsrepr` is what worker
    logs show of the arguments (default: all of them); it keeps request bodies out."""
    task_id = str(uuid.uuid4())
    headers, properties, body, _ = celery_app.amqp.as_task_v2(
        task_id,
        task_name,
        args=args,
        kwargs={},
        argsrepr=argsrepr if argsrepr is not None else repr(args),
        kwargsrepr="{}",
    )
    queue = queue_of(task_name)
    envelope = {
        "body": base64.b64encode(orjson.dumps([body[0], body[1], NO_CANVAS])).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return TaskMessage(queue, orjson.dumps(envelope).decode())


async def push(message: TaskMessage) -> None:
    await broker_redis().lpush(message.queue, message.payload)


async def enqueue(task_name: str, *args: Any) -> None:
    """Queue `task_name(*args)`; call it only after the transaction that made its rows commits."""
    await push(task_message(task_name, args))
