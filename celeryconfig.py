"""Celery configuration (lowercase settings), read by `core.celery_app`.

Queues keep kinds of work apart so a flood of chats never starves the rest:
`chat` (streaming generations, I/O pool), `default` (titles, plug-in-api accounts),
`maintenance` (the quota, key-usage, subscription and sweep beat jobs).
"""

from kombu import Queue

from core.config import settings

broker_url = settings.celery_broker_url
if broker_url.startswith("redis://"):
    # kombu's Redis transport, less its new client object per received task and ack.
    broker_transport = "workers.broker:Transport"
broker_connection_retry_on_startup = True
# Redis redelivers an unacknowledged task after this; it must exceed the longest
# generation or a still-running task would be handed to a second worker.
broker_transport_options = {"visibility_timeout": settings.generation_timeout_seconds + 300}

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
result_backend = None
timezone = "UTC"
enable_utc = True

task_queues = (Queue("chat"), Queue("default"), Queue("maintenance"))
task_default_queue = "default"
# A task is named `workers.<module>.<verb>` after its file in workers/tasks/: one glob each.
task_routes = {
    "workers.chat.*": {"queue": "chat"},
    "workers.titles.*": {"queue": "default"},
    "workers.plugin.*": {"queue": "default"},
    "workers.maintenance.*": {"queue": "maintenance"},
    "workers.quotas.*": {"queue": "maintenance"},
    "workers.api_keys.*": {"queue": "maintenance"},
    "workers.subscriptions.*": {"queue": "maintenance"},
    "workers.attachments.*": {"queue": "maintenance"},
}

# Long I/O tasks: a worker takes only what it can start now.
worker_prefetch_multiplier = 1
# Per-task events (what Flower's task list shows) are sent only by workers started
# with `--task-events`: the default/maintenance worker is; the chat worker is not,
# because publishing received/started/succeeded events from the worker in the middle
# of a generation's start cost ~3 ms of time to first token (README, "Benchmark").
# Every worker still sends its heartbeats, so Flower lists it and its queues.
worker_send_task_events = False
task_send_sent_event = True
worker_hijack_root_logger = False

# Every task module a worker loads; the API never imports them.
imports: tuple[str, ...] = (
    "workers.tasks.plugin",
    "workers.tasks.chat",
    "workers.tasks.titles",
    "workers.tasks.maintenance",
    "workers.tasks.quotas",
    "workers.tasks.api_keys",
    "workers.tasks.subscriptions",
    "workers.tasks.attachments",
)

beat_schedule: dict[str, dict] = {
    # Redis counters to PostgreSQL; a Redis loss then costs at most this interval.
    "quota-sync": {
        "task": "workers.quotas.sync",
        "schedule": 60.0,
        "options": {"expires": 50},
    },
    "quota-reset": {
        "task": "workers.quotas.reset",
        "schedule": 60.0,
        "options": {"expires": 50},
    },
    "api-key-usage-flush": {
        "task": "workers.api_keys.flush_usage",
        "schedule": 60.0,
        "options": {"expires": 50},
    },
    # Subscriptions whose period is over: the user's next plan (or free) applies.
    "subscriptions-expire": {
        "task": "workers.subscriptions.expire",
        "schedule": 60.0,
        "options": {"expires": 50},
    },
    # Generations whose worker died (not alive) or that were never picked up.
    "sweep-generations": {
        "task": "workers.maintenance.sweep_generations",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
    # Users whose account never got made (plug-in-api down for longer than the retries).
    "plugin-requeue-stuck": {
        "task": "workers.plugin.requeue_stuck",
        "schedule": 300.0,
        "options": {"expires": 240},
    },
    # Uploads no message refers to, a day after they came (core/attachments.py).
    "attachments-sweep": {
        "task": "workers.attachments.sweep",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
    "plugin-flush-last-used": {
        "task": "workers.plugin.flush_last_used",
        "schedule": 60.0,
        "options": {"expires": 50},
    },
}
