"""Shared fixtures: a real PostgreSQL database and Redis db for the tests, the API
and a Celery worker as real processes, and authenticated clients.

The environment is fixed here, before any application module is imported, so
the settings object of this process and of every process the tests start
agree. `SB_TEST_SLOT` (0-3) gives parallel test runs on one machine their own
database and Redis db indexes.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Fixture modules per domain (fake upstreams and their fixtures).
pytest_plugins: list[str] = [
    "tests.fakes.apple",
    "tests.fakes.linuxdo",
    # Before plugin_api, which imports it (pytest rewrites asserts only in unimported modules).
    "tests.fakes.llm",
    "tests.fakes.plugin_api",
]
# Session fixtures returning env vars (e.g. fake upstream URLs) for the processes the tests start.
ENV_FIXTURES: list[str] = ["apple_env", "linuxdo_env", "plugin_api_env", "llm_env"]
SLOT = int(os.environ.get("SB_TEST_SLOT", "0"))


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _with_redis_db(url: str, index: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{index}"))


if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
    raise pytest.UsageError(
        "DATABASE_URL and REDIS_URL must be set; run the tests with `make test`, "
        "which starts embedded servers when they are not"
    )

TEST_DATABASE = f"switchboard_test{SLOT or ''}"
TEST_ENV = {
    "ENVIRONMENT": "development",
    "DATABASE_URL": _with_database(os.environ["DATABASE_URL"], TEST_DATABASE),
    "REDIS_URL": _with_redis_db(os.environ["REDIS_URL"], 14 - 2 * SLOT),
    "BROKER_URL": _with_redis_db(os.environ["REDIS_URL"], 15 - 2 * SLOT),
    "DATA_DIR": tempfile.mkdtemp(prefix="switchboard-test-data-"),
    "SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256-0123456789",
    # Two keys: the first encrypts, both decrypt (rotation is tested with them).
    "ENCRYPTION_KEYS": "GRq6FSytCgUxhvcMQDfH-ZLILxhzy2s1AvLv0kxmzZw=,"
    "479dGZ5nsaxRlDvtaA10pv_l15xjptTZnT_QUj3Nt54=",
    "FLOWER_BASIC_AUTH": "test:test",
    # Several API and worker processes share the server's 100 connections.
    "DB_POOL_SIZE": "4",
    "DB_MAX_OVERFLOW": "12",
    "WORKER_CONCURRENCY": "60",
}
os.environ.update(TEST_ENV)

from core.config import settings  # noqa: E402  (after the environment is fixed)


def _admin_conninfo() -> str:
    return _with_database(settings.require_database_url(), "postgres").replace(
        "postgresql+psycopg://", "postgresql://"
    )


def free_port() -> int:
    from cli.embedded import free_port as _free_port

    return _free_port()


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[str]:
    """A fresh test database, migrated once per session with Alembic."""
    from cli.migrate import upgrade_database

    with psycopg.connect(_admin_conninfo(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (TEST_DATABASE,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}"')
        conn.execute(f'CREATE DATABASE "{TEST_DATABASE}"')
    upgrade_database(settings.require_database_url())
    yield settings.require_database_url()


@pytest.fixture(autouse=True)
def clean_state(database: str) -> Iterator[None]:
    """Each test starts with empty tables and an empty Redis db (the broker's is separate)."""
    from sqlalchemy import text

    from core.db import sync_engine
    from core.redis import sync_redis
    from models import Base

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with sync_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    sync_redis().flushdb()
    yield


class ServiceProcess:
    """A project process (API or worker) started with the test environment."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log_path = Path(TEST_ENV["DATA_DIR"]) / f"{name}.log"
        self._log = open(self.log_path, "ab")  # closed in stop()
        # An earlier process of the same name wrote to this file too: its " ready." line
        # must not pass for this one's.
        self._log_start = self._log.tell()
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log_text(self) -> str:
        """This process' output (the file may begin with an earlier one's)."""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def wait_for(self, check, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_text()[-4000:]}")
            if check():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout} s:\n{self.log_text()[-4000:]}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def start_api(env: dict[str, str], port: int | None = None) -> tuple[ServiceProcess, str]:
    from cli.stack import api_command

    port = port or free_port()
    argv = api_command("127.0.0.1", port)
    server = ServiceProcess(f"api-{port}", argv, env)
    base_url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(base_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    server.wait_for(ready)
    return server, base_url


def start_worker(
    env: dict[str, str], name: str = "worker", concurrency: int = 60
) -> ServiceProcess:
    from cli.stack import worker_command

    argv = [
        *worker_command(
            "chat,default,maintenance", concurrency, f"{name}-{os.getpid()}@%h", "INFO"
        ),
        "--without-mingle",
        "--without-gossip",
    ]
    worker = ServiceProcess(name, argv, env)
    worker.wait_for(lambda: " ready." in worker.log_text(), timeout=60)
    return worker


@pytest.fixture(scope="session")
def service_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment of the processes the tests start, with the fakes' URLs (ENV_FIXTURES)."""
    env = {**os.environ, **TEST_ENV}
    for name in ENV_FIXTURES:
        env.update(request.getfixturevalue(name))
    return env


@pytest.fixture(scope="session")
def api_server(service_env: dict[str, str]) -> Iterator[str]:
    server, base_url = start_api(service_env)
    yield base_url
    server.stop()


@pytest.fixture(scope="session")
def second_api_server(service_env: dict[str, str]) -> Iterator[str]:
    """Another API replica on the same PostgreSQL and Redis (cross-replica behaviour)."""
    server, base_url = start_api(service_env)
    yield base_url
    server.stop()


@pytest.fixture(scope="session")
def celery_worker(service_env: dict[str, str], database: str) -> Iterator[ServiceProcess]:
    worker = start_worker(service_env)
    yield worker
    worker.stop()


@pytest.fixture
async def client(api_server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_server, timeout=30) as http:
        yield http


class TestUser:
    """A user made directly in the database, with a live session and access token."""

    def __init__(self, user_id, email: str, access_token: str, session_id) -> None:
        self.id = user_id
        self.email = email
        self.access_token = access_token
        self.session_id = session_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@pytest.fixture
def make_user(database: str):
    """Factory: `make_user(plan="pro")` inserts a user (a paid plan with a 30-day admin
    subscription) and opens a session for it."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from core.db import worker_session
    from core.security import create_token, hash_token
    from core.subscriptions import new_subscription
    from models import AuthSession, SubscriptionSource, SubscriptionStatus, User

    def factory(plan: str = "free", email: str | None = None, **fields) -> TestUser:
        user_id, session_id = uuid.uuid4(), uuid.uuid4()
        email = email or f"user-{user_id.hex[:10]}@example.com"
        refresh, _ = create_token(user_id, session_id, "refresh")
        with worker_session() as session:
            session.add(
                User(id=user_id, email=email, username=f"u{user_id.hex[:12]}", plan=plan, **fields)
            )
            session.flush()
            if plan != "free":
                # A paid plan is held through a subscription, as core/subscriptions.py gives it.
                session.add(
                    new_subscription(
                        user_id,
                        plan,
                        datetime.now(UTC),
                        timedelta(days=30),
                        SubscriptionStatus.ACTIVE,
                        SubscriptionSource.ADMIN,
                    )
                )
            session.add(
                AuthSession(
                    id=session_id,
                    user_id=user_id,
                    refresh_token_hash=hash_token(refresh),
                    expires_at=datetime.now(UTC) + timedelta(days=7),
                )
            )
        access, _ = create_token(user_id, session_id, "access")
        return TestUser(user_id, email, access, session_id)

    return factory
