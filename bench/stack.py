"""The processes a bench run measures: PostgreSQL, Redis, the fake upstream, the API
and the chat workers, each a child process whose CPU and memory psutil can read.

Embedded PostgreSQL and valkey (the ones `make run` uses) by default, so the
counters of INFO commandstats and the statement log see only this run;
`--database-url` / `--redis-url` attach to given servers instead (a dedicated
database and Redis db index, recreated and flushed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import psycopg
import redis

from cli.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from cli.embedded import wait_until as embedded_wait_until
from cli.stack import api_command, worker_command

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATABASE = "switchboard_bench"
# Every bench caller may stream as much as the sweep asks: quotas are not what is measured.
BENCH_PLANS = (
    '{"free": {"default_model": "deepseek-chat", "monthly_requests": 1000000000, '
    '"rpm": 100000000, "max_api_keys": 5}}'
)


def wait_until(check, what: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    embedded_wait_until(check, what, timeout, process, transient=(OSError, httpx.HTTPError))


def http_ready(url: str) -> bool:
    return httpx.get(url, timeout=1).status_code < 500


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class BenchStack:
    workdir: Path
    database_url: str | None = None
    database_name: str = BENCH_DATABASE
    redis_url: str | None = None
    # The pool's capacity (CHAT_MAX_STREAMS) is processes x threads; admission control
    # refuses past it. bench/run.py sizes it (README, "Sizing").
    worker_processes: int = 2
    worker_concurrency: int = 100
    children: dict[str, Child] = field(default_factory=dict)
    postgres: EmbeddedPostgres | None = None
    valkey: EmbeddedRedis | None = None
    env: dict[str, str] = field(default_factory=dict)
    upstream_url: str = ""
    api_url: str = ""

    @classmethod
    def create(cls, **kwargs) -> BenchStack:
        return cls(workdir=Path(tempfile.mkdtemp(prefix="switchboard-bench-")), **kwargs)

    # -- backing services ------------------------------------------------------------

    def _backing_services(self) -> tuple[str, str]:
        if self.database_url:
            parts = urlsplit(self.database_url)
            admin = urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (self.database_name,),
                )
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}"')
                conn.execute(f'CREATE DATABASE "{self.database_name}"')
            database_url = urlunsplit(parts._replace(path=f"/{self.database_name}"))
        else:
            self.postgres = EmbeddedPostgres(self.workdir)
            self.postgres.start()
            self.postgres.ensure_database(BENCH_DATABASE)
            database_url = self.postgres.url(BENCH_DATABASE)
        if self.redis_url:
            redis_url = self.redis_url
            redis.Redis.from_url(redis_url).flushdb()
        else:
            self.valkey = EmbeddedRedis(self.workdir)
            self.valkey.start()
            redis_url = self.valkey.url(0)
        return database_url, redis_url

    @property
    def embedded(self) -> bool:
        return self.postgres is not None

    def postgres_pids(self) -> list[int]:
        if self.postgres and self.postgres.process:
            return [self.postgres.process.pid]
        return []

    def redis_pid(self) -> int | None:
        return self.valkey.process.pid if self.valkey and self.valkey.process else None

    # -- our processes -------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT
            )
        child = Child(name, process, log_path)
        self.children[name] = child
        return child

    def start(self) -> None:
        from cli.migrate import upgrade_database

        database_url, redis_url = self._backing_services()
        upgrade_database(database_url)
        port = free_port()
        upstream = self._spawn(
            "upstream",
            [sys.executable, "-m", "bench.upstream", "--port", str(port)],
            dict(os.environ),
        )
        self.upstream_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ready(self.upstream_url + "/"), "fake upstream", 20, upstream.process
        )
        # application_name tells the API's statements from the worker's in the statement log.
        self.env = {
            **os.environ,
            "ENVIRONMENT": "development",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "BROKER_URL": redis_url,
            "DATA_DIR": str(self.workdir / "data"),
            "DEEPSEEK_BASE_URL": self.upstream_url,
            "DEEPSEEK_API_KEY": "sk-bench",
            "PLANS": BENCH_PLANS,
            "WORKER_CONCURRENCY": str(self.worker_concurrency),
            "CHAT_MAX_STREAMS": str(self.capacity),
            "CHAT_MAX_STREAMS_PER_USER": str(self.capacity),
            "LOG_FORMAT": "text",
        }
        self.start_api()
        for index in range(1, self.worker_processes + 1):
            self.start_worker(index)

    @property
    def capacity(self) -> int:
        return self.worker_processes * self.worker_concurrency

    def worker_names(self) -> list[str]:
        return [name for name in self.children if name.startswith("worker")]

    def _with_app_name(self, name: str) -> dict[str, str]:
        url = self.env["DATABASE_URL"]
        return {
            **self.env,
            "DATABASE_URL": f"{url}{'&' if '?' in url else '?'}application_name={name}",
        }

    def start_api(self) -> None:
        port = free_port()
        argv = [*api_command("127.0.0.1", port), "--backlog", "4096"]
        child = self._spawn("api", argv, self._with_app_name("bench-api"))
        self.api_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ready(self.api_url + "/healthz"), "API", 60, child.process)

    def restart_api(self, capacity: int) -> None:
        """The API again, with another CHAT_MAX_STREAMS (the flood's); the workers stay."""
        self.children.pop("api").stop()
        self.env.update(CHAT_MAX_STREAMS=str(capacity), CHAT_MAX_STREAMS_PER_USER=str(capacity))
        self.start_api()

    def start_worker(self, index: int) -> None:
        argv = [
            *worker_command(
                "chat,default,maintenance",
                self.worker_concurrency,
                f"bench-chat{index}@%h",
                "WARNING",
            ),
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ]
        child = self._spawn(f"worker-{index}", argv, self._with_app_name("bench-worker"))
        # At WARNING a worker logs nothing when ready; its BRPOP on the broker db shows it.
        wait_until(lambda: self._consumers() >= index, "chat worker", 60, child.process)

    def _consumers(self) -> int:
        client = redis.Redis.from_url(self.env["BROKER_URL"], decode_responses=True)
        db = client.connection_pool.connection_kwargs.get("db", 0)
        return sum(
            c.get("cmd") == "brpop" and int(c.get("db", -1)) == db for c in client.client_list()
        )

    def pids(self) -> dict[str, int]:
        found = {name: child.process.pid for name, child in self.children.items()}
        if (pid := self.redis_pid()) is not None:
            found["redis"] = pid
        for pid in self.postgres_pids():
            found["postgres"] = pid
        return found

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()
        self.children.clear()
        if self.valkey:
            self.valkey.stop()
        if self.postgres:
            self.postgres.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and its children (PostgreSQL runs one backend per connection)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
