"""The bench script works: a tiny `python -m bench.run --quick` against the test servers.
No timing is asserted (the suite never times anything); only that every reply arrived
whole, the flood was refused past capacity, and the results were written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SLOT, TEST_ENV, _with_redis_db

pytestmark = pytest.mark.slow


def test_quick_bench_completes_without_lost_tokens(tmp_path) -> None:
    output = tmp_path / "latest.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--no-litellm",
            "--levels",
            "1,4",
            "--level-seconds",
            "0.5",
            "--sequential",
            "2",
            "--database-url",
            TEST_ENV["DATABASE_URL"],
            "--database-name",
            f"switchboard_bench{SLOT}",
            # A db index no other slot's tests or brokers use.
            "--redis-url",
            _with_redis_db(TEST_ENV["REDIS_URL"], 3 - SLOT),
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(output.read_text())
    assert [level["concurrency"] for level in report["sweep"]] == [1, 4]
    for level in report["sweep"]:
        assert level["completed"] > 0 and level["failed"] == 0 and level["wrong_tokens"] == 0
    for path in ("direct", "openai", "conversation"):
        assert report["sequential"][path]["completed"] == 2
    overload = report["overload"]
    assert overload["refused"] > 0 and overload["wrong_tokens"] == 0
    assert overload["completed"] + overload["refused"] == overload["offered"]
    # Each admitted stream's row was found and timed, step by step.
    assert all(step["p50_ms"] is not None for step in overload["admitted_steps"].values())
    assert report["hot_path"]["redis_commands_per_request"]["api"]["total"] > 0
    assert "Concurrency sweep" in run.stdout
