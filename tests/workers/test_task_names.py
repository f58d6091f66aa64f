"""Task names are a public API: each names the module that defines it, and beat, the
queue routes and every sender name only tasks that are registered."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from celery import Task

from core.celery_app import celery_app

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(path.stem for path in (ROOT / "workers" / "tasks").glob("[!_]*.py"))
# Each task's queue. Moving a task to another queue, or renaming it, is a deliberate
# change: queued messages and the workers' `--queues` depend on both.
QUEUES = {
    "workers.api_keys.flush_usage": "maintenance",
    "workers.attachments.sweep": "maintenance",
    "workers.chat.generate": "chat",
    "workers.maintenance.sweep_generations": "maintenance",
    "workers.plugin.flush_last_used": "default",
    "workers.plugin.provision": "default",
    "workers.plugin.requeue_stuck": "default",
    "workers.quotas.reset": "maintenance",
    "workers.quotas.sync": "maintenance",
    "workers.subscriptions.expire": "maintenance",
    "workers.titles.generate": "default",
}


@pytest.fixture(scope="module")
def ours() -> dict[str, Task]:
    # What a worker imports at start (celeryconfig `imports`), without starting one.
    celery_app.loader.import_default_modules()
    return {name: task for name, task in celery_app.tasks.items() if name.startswith("workers.")}


def test_every_task_is_named_after_its_module(ours: dict[str, Task]) -> None:
    assert ours
    for name, task in ours.items():
        _, module, verb = name.split(".")
        assert task.__module__ == f"workers.tasks.{module}", name
        # The verb is the function's name, less what the module already says
        # (`sync_quotas` in quotas.py is `workers.quotas.sync`).
        words = iter(task.run.__name__.split("_"))
        assert all(word in words for word in verb.split("_")), (name, task.run.__name__)


def test_every_task_module_is_imported_by_workers_and_defines_tasks(
    ours: dict[str, Task],
) -> None:
    assert sorted(celery_app.conf.imports) == [f"workers.tasks.{m}" for m in MODULES]
    assert {name.split(".")[1] for name in ours} == set(MODULES)


def test_beat_names_registered_tasks(ours: dict[str, Task]) -> None:
    for entry, schedule in celery_app.conf.beat_schedule.items():
        assert schedule["task"] in ours, entry


def test_routes_are_per_module_and_none_is_dead(ours: dict[str, Task]) -> None:
    routes = celery_app.conf.task_routes
    assert set(routes) == {f"workers.{m}.*" for m in MODULES}
    for glob in routes:
        assert any(fnmatchcase(name, glob) for name in ours), f"no task matches {glob}"


def test_each_task_goes_to_its_queue(ours: dict[str, Task]) -> None:
    assert set(ours) == set(QUEUES)
    router = celery_app.amqp.router
    assert {name: router.route({}, name)["queue"].name for name in ours} == QUEUES


def test_tasks_sent_by_name_are_registered(ours: dict[str, Task]) -> None:
    named = re.compile(rf"""["'](workers\.(?:{"|".join(MODULES)})\.\w+)["']""")
    sources = [ROOT / "celeryconfig.py"]
    for folder in ("api", "core", "workers", "cli", "bench", "tests"):
        sources += (ROOT / folder).rglob("*.py")
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources
        for name in named.findall(path.read_text(encoding="utf-8"))
        if name not in ours
    }
    assert not unknown
