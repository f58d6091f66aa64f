"""`make run`'s command on the embedded default: real PostgreSQL and valkey from pip
packages, API + workers + beat + Flower, a clean Ctrl-C, and data that survives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from tests.conftest import ROOT, free_port


def _start_stack(data_dir: Path, port: int, flower_port: int) -> subprocess.Popen:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "SECRET_KEY", "ENCRYPTION_KEYS")
    }
    env.update(
        DATA_DIR=str(data_dir),
        PORT=str(port),
        FLOWER_PORT=str(flower_port),
        FLOWER_BASIC_AUTH="ops:secret",
        WORKER_CONCURRENCY="4",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "run"],
        cwd=ROOT,
        env=env,
        stdout=open(data_dir / "stack.log", "ab"),
        stderr=subprocess.STDOUT,
    )


def _wait_ready(process: subprocess.Popen, url: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("stack not ready:\n" + log.read_text()[-3000:])


def _stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=60)


def _flower_sees_workers(flower: str) -> set[str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = httpx.get(f"{flower}/api/workers?refresh=1", auth=("ops", "secret"), timeout=10)
        if answer.status_code == 200 and len(answer.json()) >= 2:
            return set(answer.json())
        time.sleep(1)
    return set()


def test_run_command_starts_everything_on_embedded_servers(tmp_path: Path) -> None:
    port, flower_port = free_port(), free_port()
    api, flower = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{flower_port}"
    stack = _start_stack(tmp_path, port, flower_port)
    try:
        _wait_ready(stack, api + "/readyz", tmp_path / "stack.log")
        state = json.loads((tmp_path / "stack.json").read_text())
        assert httpx.get(flower, timeout=5).status_code == 401
        workers = _flower_sees_workers(flower)
        assert any(name.startswith("chat@") for name in workers), workers
        assert any(name.startswith("default@") for name in workers), workers
        conninfo = state["database_url"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO users (id, email, username) "
                "VALUES (gen_random_uuid(), 'keep@example.com', 'keep')"
            )
    finally:
        assert _stop(stack) == 0
    assert not (tmp_path / "stack.json").exists()
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == [], "processes left running after Ctrl-C"

    stack = _start_stack(tmp_path, port, flower_port)
    try:
        _wait_ready(stack, api + "/readyz", tmp_path / "stack.log")
        state = json.loads((tmp_path / "stack.json").read_text())
        conninfo = state["database_url"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo) as conn:
            kept = conn.execute("SELECT username FROM users WHERE email = 'keep@example.com'")
            assert kept.fetchone() == ("keep",)
    finally:
        assert _stop(stack) == 0
