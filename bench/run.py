"""`make bench` (`python -m bench.run [--quick]`): Switchboard's speed in one run.

Starts its own stack (bench/stack.py) with a fake upstream and measures, side by
side, for each reply profile (short: 50 tokens at 20 ms; reasoning: reasoning then
content tokens): sequential TTFT/total for a direct call, our OpenAI-compatible
stream and our conversation SSE stream; a concurrency sweep against us and directly
against the fake upstream, level by level, with per-process CPU and RSS; once:
non-streaming requests/s; the hot path's Redis commands and PostgreSQL
statements per API-key request; admission control under a flood, with where
the admitted streams' time went; and the same sweep against LiteLLM proxy.
Prints a table and writes bench/results/latest.json.
Compare ratios within one run: absolute figures drift with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from statistics import quantiles

import httpx
import psutil
import psycopg
import redis
import uvloop

from bench import litellm
from bench.client import StreamResult, conversation_stream, openai_stream, prompt
from bench.http import Connection
from bench.stack import BENCH_DATABASE, BenchStack, process_tree

STATEMENT_LINE = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)")
RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "deepseek-chat"


@dataclass
class Replies:
    """One bench profile: the replies the fake upstream streams, and the sweep over them.
    Each token is a delta of its own, `delay` apart, reasoning (`reasoning_content`) first."""

    name: str
    reasoning: int
    tokens: int
    token_delay: float
    levels: list[int]
    level_seconds: float
    # Streams per path in the sequential test (their tokens come at once: no delay).
    sequential: int

    @property
    def label(self) -> str:
        thinking = f"{self.reasoning} reasoning + " if self.reasoning else ""
        content = "content tokens" if self.reasoning else "tokens"
        return f"{thinking}{self.tokens} {content} at {self.token_delay * 1000:g} ms"

    @property
    def rate(self) -> str:
        """The tokens/s its ratios compare: streams finished in a level over its wall time
        (as before profiles) for short replies; for replies as long as a level, what the
        client received within the level's window (whole streams per client skew the other)."""
        return "window_tokens_per_second" if self.reasoning else "tokens_per_second"

    @property
    def include_usage(self) -> bool:
        """A reasoning reply asks for usage, to check its `reasoning_tokens` came through."""
        return self.reasoning > 0

    def prompt(self, tag: str, delay: float | None = None) -> str:
        return prompt(
            tag, self.tokens, self.token_delay if delay is None else delay, self.reasoning
        )


@dataclass
class Settings:
    """What a run measures besides the profiles' sweeps, and the stack it runs on."""

    rps_seconds: float
    hot_path_requests: int
    # The chat pool: capacity (CHAT_MAX_STREAMS) is processes x threads.
    worker_processes: int
    worker_concurrency: int
    # The flood offers its capacity plus this many streams at once (short replies).
    overload_extra: int
    # The flood's CHAT_MAX_STREAMS: what the pool sustains at the short profile's pace
    # (~3,000 tokens/s here over 50 tokens/s a stream), not how many it can hold.
    overload_capacity: int


def short(levels: list[int], level_seconds: float, sequential: int) -> Replies:
    """The first profile, kept as it was: 50 tokens at 20 ms."""
    return Replies("short", 0, 50, 0.02, levels, level_seconds, sequential)


def reasoning(
    levels: list[int],
    level_seconds: float,
    sequential: int,
    reasoning: int = 200,
    tokens: int = 600,
    token_delay: float = 0.01,
) -> Replies:
    """Today's reasoning models: ~200 tokens of thinking, then ~600 of answer, at ~100/s."""
    return Replies("reasoning", reasoning, tokens, token_delay, levels, level_seconds, sequential)


PROFILES = ("short", "reasoning")
# Two chat workers of 100 streams each, the flood sized to the short profile's pace
# (README, "Sizing the chat pool").
FULL = Settings(3.0, 30, 2, 100, 1000, 60)
QUICK = Settings(1.0, 5, 1, 10, 50, 8)


def profiles_for(quick: bool, names: list[str], **shape) -> list[Replies]:
    """The selected profiles at full size, or `--quick`'s short versions of them; `shape`
    (reasoning, tokens, token_delay) overrides the reasoning profile's where not None."""
    given = {k: v for k, v in shape.items() if v is not None}
    if quick:
        # A reasoning reply of 160 tokens at 5 ms: 0.8 s, so CI's run stays short.
        found = {
            "short": short([1, 10, 50], 1.0, 10),
            "reasoning": reasoning(
                [1, 10, 50],
                1.0,
                3,
                **({"reasoning": 40, "tokens": 120, "token_delay": 0.005} | given),
            ),
        }
    else:
        # Reasoning replies last ~8 s: 200 streams fill the pool, more would only be refused.
        found = {
            "short": short([1, 10, 50, 200, 1000], 4.0, 100),
            "reasoning": reasoning([1, 10, 50, 100, 200], 8.0, 20, **given),
        }
    return [found[name] for name in names]


def pct(values: list[float], p: int) -> float | None:
    """The p-th percentile (inclusive method); None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return quantiles(values, n=100, method="inclusive")[p - 1]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


# -- per-process resource meter ----------------------------------------------------------


class Meter:
    """CPU seconds and peak RSS per named process tree over one measured window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak: dict[str, int] = dict.fromkeys(pids, 0)
        self._stop = threading.Event()

    def _cpu(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for name, pid in self.pids.items():
            total = 0.0
            for proc in process_tree(pid):
                try:
                    times = proc.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    continue
            totals[name] = total
        return totals

    def _sample_rss(self) -> None:
        while not self._stop.wait(0.2):
            for name, pid in self.pids.items():
                rss = 0
                for proc in process_tree(pid):
                    try:
                        rss += proc.memory_info().rss
                    except psutil.NoSuchProcess:
                        continue
                self.peak[name] = max(self.peak[name], rss)

    def __enter__(self) -> Meter:
        self.start_cpu = self._cpu()
        self._thread = threading.Thread(target=self._sample_rss, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        end = self._cpu()
        self.cpu = {name: end[name] - self.start_cpu.get(name, 0.0) for name in end}


# -- measurements ------------------------------------------------------------------------


def _client(base_url: str = "", connections: int = 2000) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(120, connect=30),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,
    )


def _summary(results: list[StreamResult], replies: Replies | None = None) -> dict:
    ttft = [r.ttft for r in results if r.completed and r.ttft is not None]
    total = [r.total for r in results if r.completed]
    found = {
        "requests": len(results),
        "completed": sum(r.completed for r in results),
        "wrong_tokens": sum(r.wrong_tokens for r in results if r.status == 200),
        "errors": sorted({r.error for r in results if r.error})[:3],
        "ttft_p50_ms": ms(pct(ttft, 50)),
        "ttft_p99_ms": ms(pct(ttft, 99)),
        "total_p50_ms": ms(pct(total, 50)),
        "total_p99_ms": ms(pct(total, 99)),
    }
    if replies is not None and replies.reasoning:
        done = [r for r in results if r.completed]
        found.update(
            reasoning_tokens=sum(r.reasoning_tokens for r in done),
            # Streams whose reasoning never arrived: a proxy that drops it.
            reasoning_dropped=sum(r.reasoning_dropped for r in done),
            # Streams whose usage did not report the reasoning tokens the upstream did.
            usage_mismatch=sum(r.usage_reasoning_tokens != replies.reasoning for r in done),
        )
    return found


@dataclass
class Auth:
    """A bench user: its JWT and one developer API key."""

    jwt_headers: dict[str, str]
    key_headers: dict[str, str]

    async def new_conversation(self, client: httpx.AsyncClient, base_url: str) -> str:
        answer = await client.post(
            base_url + "/v1/conversations", json={}, headers=self.jwt_headers
        )
        answer.raise_for_status()
        return answer.json()["id"]


async def sign_up(base_url: str) -> Auth:
    async with _client(base_url, 4) as client:
        email = f"bench-{uuid.uuid4().hex[:10]}@bench.switchboard.dev"
        tokens = await client.post(
            "/v1/auth/register", json={"email": email, "password": "bench-password-123"}
        )
        tokens.raise_for_status()
        jwt = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
        key = await client.post("/v1/developer/api-keys", json={"name": "bench"}, headers=jwt)
        key.raise_for_status()
        return Auth(jwt, {"Authorization": f"Bearer {key.json()['key']}"})


# Pause before each sequential stream, so the previous one's after-work (its usage row,
# the task's acknowledgement, a conversation's title job) is not timed inside it.
SETTLE_SECONDS = 0.05


async def sequential(stack: BenchStack, auth: Auth, replies: Replies) -> dict:
    """One stream at a time on each path, interleaved so drift hits all three alike."""
    found: dict[str, list[StreamResult]] = {"direct": [], "openai": [], "conversation": []}
    warm_up = 3
    direct_path = Connection(stack.upstream_url)
    ours_path, chat_path = Connection(stack.api_url), Connection(stack.api_url)
    usage = replies.include_usage
    async with _client() as client:
        for i in range(replies.sequential + warm_up):
            content = replies.prompt(f"seq{i}", delay=0)
            await asyncio.sleep(SETTLE_SECONDS)
            direct = await openai_stream(
                direct_path, stack.upstream_url + "/v1/chat/completions", {}, content, MODEL, usage
            )
            await asyncio.sleep(SETTLE_SECONDS)
            ours = await openai_stream(
                ours_path,
                stack.api_url + "/v1/chat/completions",
                auth.key_headers,
                content,
                MODEL,
                usage,
            )
            conversation_id = await auth.new_conversation(client, stack.api_url)
            await asyncio.sleep(SETTLE_SECONDS)
            chat = await conversation_stream(
                chat_path, stack.api_url, auth.jwt_headers, conversation_id, content
            )
            # The conversation SSE carries no usage: not checked there.
            chat.usage_reasoning_tokens = replies.reasoning
            if i >= warm_up:
                found["direct"].append(direct)
                found["openai"].append(ours)
                found["conversation"].append(chat)
    return {name: _summary(results, replies) for name, results in found.items()}


@dataclass
class Target:
    """Where a sweep streams to, and the processes whose CPU and memory it is charged."""

    name: str
    url: str
    headers: dict[str, str]
    pids: dict[str, int]


# Left out of a target's summed CPU: the fake upstream is the providers' cost, not the relay's.
UPSTREAM = "upstream"


async def sweep_level(target: Target, concurrency: int, replies: Replies) -> dict:
    """`concurrency` clients streaming back to back for `level_seconds`, then draining."""
    results: list[StreamResult] = []
    deadline = time.perf_counter() + replies.level_seconds
    in_window = 0

    def tally(tokens: int) -> None:
        nonlocal in_window
        if time.perf_counter() < deadline:
            in_window += tokens

    async def client_loop(index: int) -> None:
        connection = Connection(target.url)
        n = 0
        while time.perf_counter() < deadline:
            content = replies.prompt(f"c{concurrency}-{index}-{n}")
            result = await openai_stream(
                connection,
                target.url,
                target.headers,
                content,
                MODEL,
                replies.include_usage,
                tally,
            )
            results.append(result)
            n += 1
            if result.refused:
                # As a well-behaved client does: back again when told, not at once.
                await asyncio.sleep(result.retry_after or 1.0)
        await connection.close()

    with Meter(target.pids) as meter:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
        wall = time.perf_counter() - started
    tokens = sum(r.tokens for r in results if r.completed)
    relay_cpu = sum(cpu for name, cpu in meter.cpu.items() if name != UPSTREAM)
    summary = _summary(results, replies)
    summary.update(
        concurrency=concurrency,
        refused=sum(r.refused for r in results),
        failed=sum(not r.completed and not r.refused for r in results),
        wall_seconds=round(wall, 2),
        tokens=tokens,
        tokens_per_second=round(tokens / wall, 1),
        # What the client received while the level ran, drain left out: with replies as
        # long as the level, whole streams per client (one or two) would skew the above.
        window_tokens_per_second=round(in_window / replies.level_seconds, 1),
        cpu_seconds_per_1000_tokens={
            name: round(cpu / tokens * 1000, 3) if tokens else None
            for name, cpu in meter.cpu.items()
        },
        # The relay's processes summed (for us API, workers, Redis and PostgreSQL), the
        # fake upstream left out; None for the direct path, which has no relay.
        relay_cpu_seconds_per_1000_tokens=(
            round(relay_cpu / tokens * 1000, 3) if tokens and target.name != "direct" else None
        ),
        peak_rss_mb={name: round(rss / 2**20, 1) for name, rss in meter.peak.items()},
    )
    return summary


async def sweep(targets: list[Target], replies: Replies) -> dict[str, list[dict]]:
    """Every level against every target in turn, level by level, so the machine's drift
    hits each alike."""
    found: dict[str, list[dict]] = {target.name: [] for target in targets}
    for concurrency in replies.levels:
        for target in targets:
            level = await sweep_level(target, concurrency, replies)
            dropped = level.get("reasoning_dropped")
            _progress(
                f"  {replies.name} {target.name:>7} {concurrency:>5} streams: "
                f"{level['completed']} done, {level['refused']} refused, "
                f"{level['wrong_tokens']} wrong tokens"
                + (f", reasoning dropped in {dropped}" if dropped else "")
                + f", {level['tokens_per_second']} tokens/s "
                f"({level['window_tokens_per_second']} in the window), "
                f"TTFT p50 {level['ttft_p50_ms']} ms p99 {level['ttft_p99_ms']} ms"
            )
            found[target.name].append(level)
    return found


async def requests_per_second(url: str, headers: dict[str, str], seconds: float) -> dict:
    """64 keep-alive connections issuing GETs back to back (the lean client: httpx's own
    CPU capped these figures at a quarter of what the API serves)."""
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        connection = Connection(url)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            answer = await connection.get(url, headers)
            await answer.read()
            latencies.append(time.perf_counter() - started)
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(64)))
    wall = time.perf_counter() - started
    return {
        "requests_per_second": round(sum(statuses.values()) / wall, 1),
        "statuses": {str(k): v for k, v in statuses.items()},
        "latency_p50_ms": ms(pct(latencies, 50)),
        "latency_p99_ms": ms(pct(latencies, 99)),
    }


# -- hot path: Redis commands and PostgreSQL statements per request ----------------------


class RedisMonitor:
    """Counts the commands each client connection sends, through MONITOR (Lua-internal
    calls excluded: a script is one round trip)."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.by_port: dict[int, list[str]] = {}
        self._stop = threading.Event()

    def _run(self) -> None:
        with self.client.monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                if self._stop.is_set():
                    return
                client_address = command.get("client_address", "")
                if client_address == "lua" or command.get("client_type") == "lua":
                    continue
                port = int(command.get("client_port") or 0)
                name = command["command"].split(" ", 1)[0].upper()
                self.by_port.setdefault(port, []).append(name)

    def __enter__(self) -> RedisMonitor:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        # One more command wakes the listener so it sees the stop flag.
        self.client.ping()
        self._thread.join(5)


def _ports_of(pid: int) -> set[int]:
    ports = set()
    for proc in process_tree(pid):
        try:
            ports.update(c.laddr.port for c in proc.net_connections(kind="tcp") if c.laddr)
        except psutil.Error:
            continue
    return ports


class StatementLog:
    """PostgreSQL statements by application_name, from the embedded server's log."""

    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack

    def _admin(self) -> psycopg.Connection:
        assert self.stack.postgres is not None
        return psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.stack.postgres.port}/postgres",
            autocommit=True,
        )

    def _set(self, log_statement: str, prefix: str) -> None:
        with self._admin() as conn:
            conn.execute(f"ALTER SYSTEM SET log_statement = '{log_statement}'")
            conn.execute(f"ALTER SYSTEM SET log_line_prefix = '{prefix}'")
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.3)

    def __enter__(self) -> StatementLog:
        assert self.stack.postgres is not None
        self.path = self.stack.postgres.pgdata / "server.log"
        self._set("all", "%a|")
        self.offset = self.path.stat().st_size
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)
        with open(self.path, errors="replace") as log:
            log.seek(self.offset)
            self.lines = log.readlines()
        self._set("none", "%m [%p] ")

    def count(self, application: str) -> dict[str, int]:
        found = {"statements": 0, "transactions": 0}
        for line in self.lines:
            app, _, rest = line.partition("|")
            # Simple-protocol statements log as "statement:", extended ones as "execute <name>:".
            found_statement = STATEMENT_LINE.search(rest)
            if app != application or not found_statement:
                continue
            statement = found_statement.group(1).strip().upper()
            if statement.startswith("BEGIN"):
                found["transactions"] += 1
            elif not statement.startswith(("COMMIT", "ROLLBACK")):
                found["statements"] += 1
        return found


async def hot_path(stack: BenchStack, auth: Auth, settings: Settings) -> dict:
    """Per API-key streamed chat request, after warm-up: who sends what to Redis and PostgreSQL."""
    url = stack.api_url + "/v1/chat/completions"
    connection = Connection(url)
    for i in range(3):
        await openai_stream(connection, url, auth.key_headers, prompt(f"warm{i}", 5, 0), MODEL)
    statements = StatementLog(stack) if stack.embedded else None
    with RedisMonitor(stack.env["REDIS_URL"]) as monitor:
        if statements:
            statements.__enter__()
        for i in range(settings.hot_path_requests):
            result = await openai_stream(
                connection, url, auth.key_headers, prompt(f"hot{i}", 5, 0), MODEL
            )
            assert result.completed, result.error
        if statements:
            statements.__exit__(None, None, None)
    n = settings.hot_path_requests
    found: dict = {"requests": n, "redis_commands_per_request": {}}
    for name, children in (("api", ["api"]), ("worker", stack.worker_names())):
        ports = set().union(*(_ports_of(stack.children[c].process.pid) for c in children))
        commands = [c for port, cs in monitor.by_port.items() if port in ports for c in cs]
        counts: dict[str, int] = {}
        for command in commands:
            counts[command] = counts.get(command, 0) + 1
        found["redis_commands_per_request"][name] = {
            "total": round(len(commands) / n, 2),
            "by_command": {k: round(v / n, 2) for k, v in sorted(counts.items())},
        }
    if statements:
        found["postgres_per_request"] = {
            name: {k: round(v / n, 2) for k, v in statements.count(f"bench-{name}").items()}
            for name in ("api", "worker")
        }
    else:
        found["postgres_per_request"] = "statement log needs the embedded PostgreSQL"
    return found


# -- admission control under a flood -------------------------------------------------------


def _admitted_steps(stack: BenchStack, since: datetime) -> dict:
    """Where the admitted streams' time went, from the timestamps of their rows (ms,
    p50 and p99): the flood's start to the API's start script (`queued_at`), from there
    to a worker claiming the task (`started_at`), and on to the first token."""
    url = stack.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT queued_at, started_at, first_token_at FROM generations"
            " WHERE queued_at >= %s AND first_token_at IS NOT NULL",
            (since,),
        ).fetchall()
    steps = {
        "to_start_script": [(queued - since).total_seconds() for queued, _, _ in rows],
        "to_worker": [(started - queued).total_seconds() for queued, started, _ in rows],
        "to_first_token": [(first - started).total_seconds() for _, started, first in rows],
    }
    return {
        name: {"p50_ms": ms(pct(values, 50)), "p99_ms": ms(pct(values, 99))}
        for name, values in steps.items()
    }


async def overload(stack: BenchStack, auth: Auth, settings: Settings) -> dict:
    """`overload_capacity` plus `overload_extra` streams of the short profile, all at once,
    the API restarted with that capacity."""
    capacity = settings.overload_capacity
    if capacity != stack.capacity:
        stack.restart_api(capacity)
    url = stack.api_url + "/v1/chat/completions"
    total = capacity + settings.overload_extra
    replies = short([], 0, 0)
    await openai_stream(
        Connection(url), url, auth.key_headers, prompt("warm-overload", 5, 0), MODEL
    )
    since = datetime.now(UTC)
    results = await asyncio.gather(
        *(
            openai_stream(
                Connection(url),
                url,
                auth.key_headers,
                replies.prompt(f"flood{i}"),
                MODEL,
            )
            for i in range(total)
        )
    )
    admitted = [r for r in results if not r.refused]
    refused = [r for r in results if r.refused]
    summary = _summary(admitted)
    summary.update(
        capacity=capacity,
        offered=total,
        refused=len(refused),
        refusal_statuses=sorted({r.status for r in refused}),
        refusal_p50_ms=ms(pct([r.total for r in refused], 50)),
        refusal_p99_ms=ms(pct([r.total for r in refused], 99)),
        admitted_steps=_admitted_steps(stack, since),
    )
    return summary


# -- report --------------------------------------------------------------------------------


def _progress(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def _fmt(value) -> str:
    return "-" if value is None else f"{value}"


def _profile_table(name: str, figures: dict) -> list[str]:
    """One profile's sequential table and sweep, with ratios to direct and to LiteLLM."""
    settings = figures["settings"]
    lines = [
        f"Profile {name}: {settings['label']}, {settings['level_seconds']} s per level",
        "Sequential, one stream at a time (ms; tokens at once)",
        f"{'path':<26}{'TTFT p50':>10}{'TTFT p99':>10}{'total p50':>11}{'total p99':>11}"
        f"{'added p50':>11}{'added p99':>11}",
    ]
    seq = figures["sequential"]
    direct = seq["direct"]
    for path, label in (
        ("direct", "direct to fake upstream"),
        ("openai", "/v1/chat/completions"),
        ("conversation", "conversation SSE"),
        ("litellm", "LiteLLM proxy"),
    ):
        row = seq.get(path)
        if not isinstance(row, dict):
            continue
        added = [
            None if row[key] is None or direct[key] is None else round(row[key] - direct[key], 2)
            for key in ("ttft_p50_ms", "ttft_p99_ms")
        ]
        lines.append(
            f"{label:<26}{_fmt(row['ttft_p50_ms']):>10}{_fmt(row['ttft_p99_ms']):>10}"
            f"{_fmt(row['total_p50_ms']):>11}{_fmt(row['total_p99_ms']):>11}"
            f"{_fmt(added[0]):>11}{_fmt(added[1]):>11}"
        )
    rate_key = settings["rate"]
    lines += [
        "",
        f"Concurrency sweep, {name} ({settings['label']}, {settings['level_seconds']} s per "
        "level). tokens/s: reasoning and content tokens of finished streams over the level's "
        "wall time; window/s: received while the level ran. Ratios on "
        + ("window/s" if rate_key == "window_tokens_per_second" else "tokens/s")
        + ". relay CPU: CPU s per 1k tokens, the relay's processes summed (not the upstream).",
        f"{'target':<9}{'streams':>8}{'done':>7}{'refused':>8}{'failed':>7}{'wrong':>6}"
        f"{'TTFT p50':>10}{'TTFT p99':>10}{'tokens/s':>10}{'window/s':>10}{'vs direct':>10}"
        f"{'vs LiteLLM':>11}{'relay CPU':>10}  CPU s/1k tokens by process",
    ]
    by_level = {
        target: {level["concurrency"]: level for level in figures.get(key) or []}
        for target, key in (("direct", "direct_sweep"), ("litellm", "litellm_sweep"))
    }
    for target, key in (
        ("ours", "sweep"),
        ("direct", "direct_sweep"),
        ("litellm", "litellm_sweep"),
    ):
        for level in figures.get(key) or []:
            rate = level[rate_key]
            other = {
                name: (levels.get(level["concurrency"]) or {}).get(rate_key)
                for name, levels in by_level.items()
            }
            cpu = ", ".join(
                f"{k} {v}"
                for k, v in level["cpu_seconds_per_1000_tokens"].items()
                if v is not None and v >= 0.005
            )
            lines.append(
                f"{target:<9}{level['concurrency']:>8}{level['completed']:>7}{level['refused']:>8}"
                f"{level['failed']:>7}{level['wrong_tokens']:>6}{_fmt(level['ttft_p50_ms']):>10}"
                f"{_fmt(level['ttft_p99_ms']):>10}{level['tokens_per_second']:>10}"
                f"{level['window_tokens_per_second']:>10}"
                f"{_ratio(rate, other['direct']) if target != 'direct' else '-':>10}"
                f"{_ratio(rate, other['litellm']) if target == 'ours' else '-':>11}"
                f"{_fmt(level.get('relay_cpu_seconds_per_1000_tokens')):>10}  {cpu}"
            )
    if figures.get("sweep"):
        peak = max(figures["sweep"], key=lambda level: level[rate_key])
        lines.append(
            f"peak RSS MB at {peak['concurrency']} streams: "
            + ", ".join(f"{k} {v}" for k, v in peak["peak_rss_mb"].items())
        )
    if figures.get("litellm_note"):
        lines.append(f"LiteLLM: {figures['litellm_note']}")
    lines.append("")
    return lines


def table(report: dict) -> str:
    lines: list[str] = []
    for name, figures in report["profiles"].items():
        lines += _profile_table(name, figures)
    rps = report["requests_per_second"]
    lines.append(
        "Non-streaming, 64 concurrent: "
        + "; ".join(
            f"{k} {v['requests_per_second']} req/s (p99 {v['latency_p99_ms']} ms)"
            for k, v in rps.items()
        )
    )
    hot = report["hot_path"]
    lines.append(
        "Hot path per API-key streamed request: Redis commands "
        + ", ".join(f"{k} {v['total']}" for k, v in hot["redis_commands_per_request"].items())
        + "; PostgreSQL "
        + json.dumps(hot["postgres_per_request"])
    )
    over = report["overload"]
    lines.append(
        f"Admission: capacity {over['capacity']}, offered {over['offered']} at once: "
        f"{over['completed']} completed, {over['refused']} refused "
        f"({over['refusal_statuses']}, p99 {over['refusal_p99_ms']} ms), "
        f"admitted TTFT p50 {over['ttft_p50_ms']} ms p99 {over['ttft_p99_ms']} ms, "
        f"{over['wrong_tokens']} wrong tokens"
    )
    labels = {
        "to_start_script": "flood start to start script",
        "to_worker": "to a worker",
        "to_first_token": "to the first token",
    }
    lines.append(
        "  admitted, per step (p50/p99 ms): "
        + ", ".join(
            f"{label} {_fmt(over['admitted_steps'][name]['p50_ms'])}"
            f"/{_fmt(over['admitted_steps'][name]['p99_ms'])}"
            for name, label in labels.items()
        )
    )
    if report.get("litellm_error"):
        lines.append(f"LiteLLM: {report['litellm_error']}")
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("fastapi", "uvicorn", "celery", "redis", "httpx", "sqlalchemy", "psycopg"):
        found[name] = version(name)
    return found


async def measure(
    stack: BenchStack, settings: Settings, profiles: list[Replies], args: argparse.Namespace
) -> dict:
    report: dict = {
        "settings": settings.__dict__,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "profiles": {
            replies.name: {
                "settings": {**replies.__dict__, "label": replies.label, "rate": replies.rate}
            }
            for replies in profiles
        },
    }
    figures = report["profiles"]
    auth = await sign_up(stack.api_url)
    pids = stack.pids()
    for replies in profiles:
        _progress(f"sequential TTFT, {replies.name} ...")
        figures[replies.name]["sequential"] = await sequential(stack, auth, replies)
    _progress("hot path ...")
    report["hot_path"] = await hot_path(stack, auth, settings)
    _progress("requests/s ...")
    report["requests_per_second"] = {
        "GET /v1/conversations (JWT)": await requests_per_second(
            stack.api_url + "/v1/conversations", auth.jwt_headers, settings.rps_seconds
        ),
        "GET /v1/models (API key)": await requests_per_second(
            stack.api_url + "/v1/models", auth.key_headers, settings.rps_seconds
        ),
    }
    ours = Target("ours", stack.api_url + "/v1/chat/completions", auth.key_headers, pids)
    direct = Target(
        "direct", stack.upstream_url + "/v1/chat/completions", {}, {UPSTREAM: pids[UPSTREAM]}
    )
    for replies in profiles:
        _progress(
            f"sweep, {replies.name}: ours and direct to the fake upstream, level by level ..."
        )
        found = await sweep([ours, direct], replies)
        figures[replies.name]["sweep"] = found["ours"]
        figures[replies.name]["direct_sweep"] = found["direct"]
    _progress("admission under a flood ...")
    report["overload"] = await overload(stack, auth, settings)
    if args.no_litellm:
        report["litellm_error"] = "skipped (--no-litellm)"
    else:
        await measure_litellm(stack, profiles, args, report)
    _legacy_keys(report)
    return report


async def measure_litellm(
    stack: BenchStack, profiles: list[Replies], args: argparse.Namespace, report: dict
) -> None:
    _progress("LiteLLM proxy: install/start ...")
    try:
        litellm.install()
        proxy = litellm.start(stack.workdir, stack.upstream_url, args.litellm_workers)
    # Any install or start failure is reported in the results, not fatal to the bench.
    except Exception as exc:
        report["litellm_error"] = f"not measured: {type(exc).__name__}: {str(exc)[:300]}"
        _progress(report["litellm_error"])
        return
    try:
        report["litellm_version"] = proxy.version
        url = proxy.url + "/v1/chat/completions"
        connection = Connection(url)
        for i in range(3):
            await openai_stream(connection, url, proxy.headers, prompt(f"lwarm{i}", 5, 0), MODEL)
        target = Target(
            "litellm",
            url,
            proxy.headers,
            {"litellm": proxy.child.process.pid, UPSTREAM: stack.pids()[UPSTREAM]},
        )
        for replies in profiles:
            figures = report["profiles"][replies.name]
            results = [
                await openai_stream(
                    connection,
                    url,
                    proxy.headers,
                    replies.prompt(f"lseq{i}", delay=0),
                    MODEL,
                    replies.include_usage,
                )
                for i in range(replies.sequential)
            ]
            figures["sequential"]["litellm"] = _summary(results, replies)
            _progress(f"sweep, {replies.name}, LiteLLM ...")
            figures["litellm_sweep"] = (await sweep([target], replies))["litellm"]
            if replies.reasoning:
                figures["litellm_note"] = _reasoning_note(figures)
    finally:
        proxy.stop()


def _reasoning_note(figures: dict) -> str:
    """What LiteLLM did with the reasoning, from what the client received."""
    rows = [figures["sequential"]["litellm"], *figures["litellm_sweep"]]
    done = sum(row["completed"] for row in rows)
    dropped = sum(row.get("reasoning_dropped", 0) for row in rows)
    mismatched = sum(row.get("usage_mismatch", 0) for row in rows)
    if dropped:
        relayed = (
            f"dropped the reasoning of {dropped} of {done} streams (its tokens/s counts "
            "only the content that arrived)"
        )
    else:
        relayed = f"relayed `reasoning_content` in all {done} streams, counted with the content"
    return f"{relayed}; usage without the upstream's reasoning_tokens in {mismatched}"


def _legacy_keys(report: dict) -> None:
    """The short profile's figures also where they were before profiles (`profile`,
    `sequential`, `sweep`, `litellm_sweep`), for readers of older results."""
    figures = report["profiles"].get("short")
    if not figures:
        return
    report["profile"] = {**figures["settings"], **report["settings"]}
    for key in ("sequential", "sweep", "litellm_sweep"):
        if key in figures:
            report[key] = figures[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, short levels")
    parser.add_argument(
        "--profiles",
        default=",".join(PROFILES),
        help="comma-separated reply profiles to measure: short (50 tokens at 20 ms), "
        "reasoning (200 reasoning + 600 content tokens at 10 ms, or as the next three "
        "options say); default both",
    )
    parser.add_argument("--reasoning-tokens", type=int, help="reasoning profile: its thinking")
    parser.add_argument("--content-tokens", type=int, help="reasoning profile: its answer")
    parser.add_argument(
        "--token-delay-ms", type=float, help="reasoning profile: ms between two tokens"
    )
    parser.add_argument("--levels", help="comma-separated sweep concurrencies (every profile)")
    parser.add_argument("--level-seconds", type=float, help="seconds each sweep level runs")
    parser.add_argument("--sequential", type=int, help="streams per path in the sequential test")
    parser.add_argument("--worker-processes", type=int, help="chat worker processes")
    parser.add_argument("--worker-concurrency", type=int, help="threads per chat worker")
    parser.add_argument(
        "--overload-capacity", type=int, help="CHAT_MAX_STREAMS for the flood (default 60)"
    )
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM comparison")
    parser.add_argument("--litellm-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--database-url", help="use this PostgreSQL (a bench database is made)")
    parser.add_argument("--database-name", default=BENCH_DATABASE, help="with --database-url")
    parser.add_argument(
        "--redis-url", help="use this Redis db (flushed) instead of embedded valkey"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.profiles.split(",") if name.strip()]
    if not names or any(name not in PROFILES for name in names):
        parser.error(f"--profiles takes some of {', '.join(PROFILES)}")
    settings = replace(QUICK if args.quick else FULL)
    profiles = profiles_for(
        args.quick,
        names,
        reasoning=args.reasoning_tokens,
        tokens=args.content_tokens,
        token_delay=None if args.token_delay_ms is None else args.token_delay_ms / 1000,
    )
    for replies in profiles:
        if args.levels:
            replies.levels = [int(x) for x in args.levels.split(",")]
        if args.level_seconds:
            replies.level_seconds = args.level_seconds
        if args.sequential:
            replies.sequential = args.sequential
    if args.worker_processes:
        settings.worker_processes = args.worker_processes
    if args.worker_concurrency:
        settings.worker_concurrency = args.worker_concurrency
    if args.overload_capacity:
        settings.overload_capacity = args.overload_capacity
    started = time.monotonic()
    stack = BenchStack.create(
        database_url=args.database_url,
        database_name=args.database_name,
        redis_url=args.redis_url,
        worker_processes=settings.worker_processes,
        worker_concurrency=settings.worker_concurrency,
    )
    try:
        _progress(f"starting the stack in {stack.workdir} ...")
        stack.start()
        # The client's loop costs CPU on the same cores as the stack: the C loop costs less.
        report = uvloop.run(measure(stack, settings, profiles, args))
    finally:
        stack.stop()
    report.update(
        command="python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        cpu_count=os.cpu_count(),
        machine=platform.machine(),
        versions=_versions(),
        embedded_servers=not (args.database_url or args.redis_url),
        duration_seconds=round(time.monotonic() - started, 1),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.output)
    _progress("")
    _progress(table(report))
    _progress(f"\nwritten {args.output} in {report['duration_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
