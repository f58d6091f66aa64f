"""The bench script works: a tiny `python -m bench.run --quick` against the test servers,
both reply profiles (short, and reasoning then content). No timing is asserted (the suite
never times anything); only that every reply arrived whole, its reasoning included, on
every path and the direct baseline, the flood was refused past capacity, and the results
were written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SLOT, TEST_ENV, _with_redis_db

pytestmark = pytest.mark.slow


def _redis_args() -> list[str]:
    # A db index no other slot's tests or brokers use; slots past 3 have none left (the
    # suite's take all 16), so the bench starts its own embedded valkey there.
    if SLOT > 3:
        return []
    return ["--redis-url", _with_redis_db(TEST_ENV["REDIS_URL"], 3 - SLOT)]


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
            *_redis_args(),
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
    assert list(report["profiles"]) == ["short", "reasoning"]
    for name, figures in report["profiles"].items():
        settings = figures["settings"]
        sent = settings["reasoning"] + settings["tokens"]
        for key in ("sweep", "direct_sweep"):
            assert [level["concurrency"] for level in figures[key]] == [1, 4], (name, key)
            for level in figures[key]:
                assert level["completed"] > 0 and level["failed"] == 0, (name, key, level)
                assert level["wrong_tokens"] == 0, (name, key, level)
                # Every token the upstream sent, reasoning and content, counted once.
                assert level["tokens"] == level["completed"] * sent, (name, key, level)
                assert level["window_tokens_per_second"] > 0, (name, key, level)
        for level in figures["sweep"]:
            assert level["relay_cpu_seconds_per_1000_tokens"] is not None
            assert level["peak_rss_mb"]["api"] > 0
        for path in ("direct", "openai", "conversation"):
            assert figures["sequential"][path]["completed"] == 2, (name, path)
            assert figures["sequential"][path]["wrong_tokens"] == 0, (name, path)
    reasoning = report["profiles"]["reasoning"]
    assert reasoning["settings"]["reasoning"] > 0
    for row in [*reasoning["sweep"], *reasoning["direct_sweep"], *reasoning["sequential"].values()]:
        assert row["reasoning_tokens"] > 0 and row["reasoning_dropped"] == 0, row
        assert row["usage_mismatch"] == 0, row
    # The short profile's figures are also where readers of older results look.
    assert report["sweep"] == report["profiles"]["short"]["sweep"]
    overload = report["overload"]
    assert overload["refused"] > 0 and overload["wrong_tokens"] == 0
    assert overload["completed"] + overload["refused"] == overload["offered"]
    # Run on the API restarted with the flood's own capacity, not the pool's.
    assert (
        overload["capacity"]
        == report["settings"]["overload_capacity"]
        != (report["settings"]["worker_processes"] * report["settings"]["worker_concurrency"])
    )
    # Each admitted stream's row was found and timed, step by step.
    assert all(step["p50_ms"] is not None for step in overload["admitted_steps"].values())
    assert report["hot_path"]["redis_commands_per_request"]["api"]["total"] > 0
    assert "Profile reasoning" in run.stdout and "vs direct" in run.stdout
