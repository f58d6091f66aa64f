"""`make run`: the whole stack in one foreground command.

Starts the embedded PostgreSQL and Redis when DATABASE_URL / REDIS_URL are
unset, runs migrations, then supervises the API, two workers (an I/O pool for
`chat`, a small pool for `default` and `maintenance`), beat and Flower. Each
child's output is prefixed with its name. Ctrl-C (or SIGTERM) stops everything
in order; if any child dies the others are stopped too.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cli.embedded import EmbeddedPostgres, EmbeddedRedis
from cli.migrate import upgrade_database
from core.config import Settings

log = logging.getLogger("switchboard.stack")

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None


def _pipe_output(name: str, stream) -> None:
    prefix = f"{name:>8} | "
    for line in iter(stream.readline, ""):
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def api_command(host: str, port: int) -> list[str]:
    """The API process as `make run`, the tests and the bench start it."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "api.app:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
        "--no-proxy-headers",
        # The C event loop and HTTP parser: less CPU per streamed chunk. The parser's
        # protocol is ours only to time out slow request lines and headers (api/server.py).
        "--loop",
        "uvloop",
        "--http",
        "api.server:HeaderTimeoutProtocol",
    ]


def worker_command(
    queues: str, concurrency: int, hostname: str, loglevel: str, *, task_events: bool = False
) -> list[str]:
    """A Celery worker on the thread pool (I/O-bound tasks), as every starter runs it;
    `task_events` for Flower's task list (celeryconfig.py says why chat has none)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        f"--queues={queues}",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--hostname={hostname}",
        f"--loglevel={loglevel}",
        *(["--task-events"] if task_events else []),
    ]


def child_commands(settings: Settings) -> list[Child]:
    celery = [sys.executable, "-m", "celery", "-A", "workers.app"]
    schedule = str(settings.data_dir.resolve() / "celerybeat-schedule")
    return [
        Child(
            "api",
            [*api_command(settings.host, settings.port), "--timeout-graceful-shutdown", "5"],
        ),
        Child(
            "chat",
            worker_command("chat", settings.worker_concurrency, "chat@%h", "INFO"),
        ),
        Child(
            "default",
            worker_command("default,maintenance", 8, "default@%h", "INFO", task_events=True),
        ),
        Child("beat", [*celery, "beat", f"--schedule={schedule}", "--loglevel=INFO"]),
        Child(
            "flower",
            [
                *celery,
                "flower",
                "--address=127.0.0.1",
                f"--port={settings.flower_port}",
                f"--basic-auth={settings.flower_basic_auth}",
            ],
        ),
    ]


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.children: list[Child] = []
        self._stopping = threading.Event()

    def _start_backing_services(self) -> dict[str, str]:
        data_dir = self.settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {"DATA_DIR": str(data_dir)}
        if self.settings.database_url:
            env["DATABASE_URL"] = self.settings.database_url
        else:
            self.postgres = EmbeddedPostgres(data_dir)
            self.postgres.start()
            env["DATABASE_URL"] = self.postgres.url()
            log.info(
                "embedded PostgreSQL on 127.0.0.1:%s (data in %s)",
                self.postgres.port,
                self.postgres.pgdata,
            )
        if self.settings.redis_url:
            env["REDIS_URL"] = self.settings.redis_url
        else:
            self.redis = EmbeddedRedis(data_dir)
            self.redis.start()
            env["REDIS_URL"] = self.redis.url()
            log.info(
                "embedded Redis (valkey) on 127.0.0.1:%s (data in %s)",
                self.redis.port,
                self.redis.dir,
            )
        return env

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stopping.set())
        try:
            env = {**os.environ, **self._start_backing_services()}
            upgrade_database(env["DATABASE_URL"])
            log.info("database migrated to head")
            for child in child_commands(self.settings):
                self._spawn(child, env)
            self._write_state(env)
            self._announce()
            return self._supervise()
        finally:
            self.stop()

    def _spawn(self, child: Child, env: dict[str, str]) -> None:
        child.process = subprocess.Popen(
            child.argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            # Own session: Ctrl-C reaches only us, and we stop children in order.
            start_new_session=True,
        )
        threading.Thread(
            target=_pipe_output, args=(child.name, child.process.stdout), daemon=True
        ).start()
        self.children.append(child)

    @property
    def state_file(self) -> Path:
        return self.settings.data_dir.resolve() / "stack.json"

    def _write_state(self, env: dict[str, str]) -> None:
        """Where everything runs, for operators (psql, alembic, redis-cli) while the stack is up."""
        state = {
            "pid": os.getpid(),
            "database_url": env["DATABASE_URL"],
            "redis_url": env["REDIS_URL"],
            "api": f"http://{self.settings.host}:{self.settings.port}",
            "flower": f"http://127.0.0.1:{self.settings.flower_port}",
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    def _announce(self) -> None:
        s = self.settings
        user = (s.flower_basic_auth or ":").split(":", 1)[0]
        log.info(
            "Switchboard is up: API http://%s:%s (docs /docs) | Flower http://127.0.0.1:%s "
            "(user %r; password in %s) | Ctrl-C stops everything",
            s.host,
            s.port,
            s.flower_port,
            user,
            "FLOWER_BASIC_AUTH"
            if os.environ.get("FLOWER_BASIC_AUTH")
            else s.data_dir.resolve() / "dev-secrets.json",
        )

    def _supervise(self) -> int:
        while not self._stopping.wait(0.5):
            for child in self.children:
                assert child.process is not None
                if child.process.poll() is not None:
                    log.error(
                        "%s exited with code %s; stopping the stack",
                        child.name,
                        child.process.returncode,
                    )
                    return 1
        log.info("stopping")
        return 0

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + 15
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.name)
                child.process.kill()
                child.process.wait()
        self.children.clear()
        self.state_file.unlink(missing_ok=True)
        if self.redis:
            self.redis.stop()
            self.redis = None
        if self.postgres:
            self.postgres.stop()
            self.postgres = None
