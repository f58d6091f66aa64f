"""`make test`: run pytest against the configured servers, or embedded ones.

With DATABASE_URL and REDIS_URL set (as on a machine with PostgreSQL and
Redis), tests use those servers (their own database and Redis db indexes).
Unset, this starts an embedded PostgreSQL and valkey in a temporary folder for
the run, the same ones `make run` uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cli.embedded import EmbeddedPostgres, EmbeddedRedis


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    with tempfile.TemporaryDirectory(prefix="switchboard-test-") as tmp:
        try:
            if not env.get("DATABASE_URL"):
                postgres = EmbeddedPostgres(Path(tmp))
                postgres.start()
                started.append(postgres)
                env["DATABASE_URL"] = postgres.url()
            if not env.get("REDIS_URL"):
                redis = EmbeddedRedis(Path(tmp))
                redis.start()
                started.append(redis)
                env["REDIS_URL"] = redis.url()
            mode = "embedded" if started else "configured"
            sys.stdout.write(
                f"tests use {mode} servers: DATABASE_URL={env['DATABASE_URL']} "
                f"REDIS_URL={env['REDIS_URL']}\n"
            )
            if not shutil.which("chromium"):
                sys.stdout.write(
                    "Chromium is not installed: the browser tests (tests/browser) will be "
                    "SKIPPED; install it with `apt-get install chromium`\n"
                )
            sys.stdout.flush()
            code = subprocess.call([sys.executable, "-m", "pytest", *argv], env=env)
        finally:
            for server in reversed(started):
                server.stop()
    # pytest's "no tests collected" is a failure for us: a run must test something.
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
