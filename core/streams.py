"""The generation stream protocol shared by workers (writers) and the API (relays).

One Redis Stream per generation, `gen:{id}`, read from its start so a late or
reconnecting reader never misses a token. Each entry has two fields: `event`
(a name of API.md: start, reasoning, delta, done, error, cancelled) and `data` (JSON).
A `reasoning` has `content`, a piece of the model's thinking text, in the provider's
order (before the reply's text). A `delta` always has `content` (text, possibly
empty); a stateless completion's delta may also carry `tool_calls`, fragments in
OpenAI's `delta.tool_calls` shape, and its `done` carries `finish_reason` and, if
any, whole `tool_calls`, `reasoning` (the whole thinking text) and `thinking_blocks`.
Exactly one terminal event is ever appended: a Lua script guards it, so a relay
declaring a dead worker and a worker finishing late cannot both end the stream.
Side keys: `gen:{id}:cancel` (the cancel flag), `gen:{id}:hb` (the id of the
worker process running it) and, for a stateless completion, `gen:{id}:claim`
(which delivery of its task runs it). Whether that worker lives is `worker:{id}:alive`,
which a small companion process keeps fresh (workers/liveness.py): a worker
whose threads queue for the GIL is slow, not dead, and must not look dead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

START = "start"
REASONING = "reasoning"
DELTA = "delta"
DONE = "done"
ERROR = "error"
CANCELLED = "cancelled"
TERMINAL_EVENTS = frozenset({DONE, ERROR, CANCELLED})

# A worker's companion process refreshes its alive key this often, from outside the
# worker's GIL; the key outlives a missed refresh or two. The companion deletes it
# as soon as the worker exits, so the TTL only matters when both are killed.
WORKER_ALIVE_INTERVAL_SECONDS = 1.0
WORKER_ALIVE_TTL_SECONDS = 5
# Finished streams stay replayable this long (late attach, resume).
FINISHED_STREAM_TTL_SECONDS = 3600
# A chat worker writes what its streams hold once a tick (workers/generation/stream_batch.py);
# a first token, or more than DELTA_FLUSH_CHARS held, goes out at once.
DELTA_FLUSH_SECONDS = 0.05
DELTA_FLUSH_CHARS = 2048
CANCEL_FLAG_TTL_SECONDS = 3600


# A stream entry id as a cursor (`Last-Event-ID`, a relay's read position): `<ms>-<seq>`,
# or `<ms>` alone, which XREAD reads as `<ms>-0`; each part ASCII digits for an unsigned
# 64-bit integer (leading zeros allowed, at most 20 digits). Redis checks an id only when
# the read runs, and then fails the whole XREAD, which one process shares among all its
# streams (api/streaming/hub.py); it is also laxer (signs, spaces, `$`, `+` from 7.4), but no
# id a client was ever sent has those, so they are refused here too.
_STREAM_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
STREAM_ID_MAX = 2**64 - 1


def parse_stream_id(value: str) -> tuple[int, int] | None:
    """`(ms, seq)` of a valid stream id (see above), else None."""
    match = _STREAM_ID.fullmatch(value)
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2] or 0)
    if ms > STREAM_ID_MAX or seq > STREAM_ID_MAX:
        return None
    return ms, seq


def stream_id_order(entry_id: str) -> tuple[int, int]:
    """The sort key of an id already known valid (Redis's own, or one `parse_stream_id`
    passed); no checks, as it runs for every entry a resumed relay compares."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def stream_key(generation_id: str) -> str:
    return f"gen:{generation_id}"


def cancel_key(generation_id: str) -> str:
    return f"gen:{generation_id}:cancel"


def heartbeat_key(generation_id: str) -> str:
    return f"gen:{generation_id}:hb"


def claim_key(generation_id: str) -> str:
    return f"gen:{generation_id}:claim"


def worker_alive_key(worker_id: str) -> str:
    return f"worker:{worker_id}:alive"


# KEYS: heartbeat key. 1 while the generation's worker process is alive. The alive
# key is named from the heartbeat's value, so the check stays one round trip.
WORKER_ALIVE_SCRIPT = """
local worker = redis.call('GET', KEYS[1])
if not worker then return 0 end
return redis.call('EXISTS', 'worker:' .. worker .. ':alive')
"""


# KEYS: claim key, heartbeat key. ARGV: user id, worker id, claim ttl, heartbeat ttl.
# Takes a stateless completion for one delivery of its task (the claim holds the user
# id, for a sweep that finds it lost before its row was stored) and names the worker
# in its heartbeat key in the same step, so a claimed generation always has one.
CLAIM_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
  return 1
end
return 0
"""


def _terminal_key(generation_id: str) -> str:
    return f"gen:{generation_id}:end"


def encode(event: str, data: dict[str, Any]) -> dict[str, str]:
    # Datetimes pass to `default`, so they read as str() gives them, whatever the writer.
    return {
        "event": event,
        "data": orjson.dumps(data, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME).decode(),
    }


def decode(fields: dict[str, str]) -> tuple[str, dict[str, Any]]:
    return fields["event"], orjson.loads(fields["data"])


# KEYS: stream, terminal marker. ARGV: event, data, ttl. Appends only the first
# terminal event, then lets the stream and the marker expire together.
TERMINAL_SCRIPT = """
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[3]) then
  local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[1], 'data', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return id
end
return false
"""


def terminal_script_args(
    generation_id: str, event: str, data: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """KEYS and ARGV for TERMINAL_SCRIPT; sync and async clients both run it with EVAL."""
    fields = encode(event, data)
    return (
        [stream_key(generation_id), _terminal_key(generation_id)],
        [fields["event"], fields["data"], str(FINISHED_STREAM_TTL_SECONDS)],
    )


@dataclass(frozen=True, slots=True)
class Opening:
    """What a generation's stream opens with, in one step: its `start` entry and TTL, its
    task message pushed onto the broker's queue list (`queue`: '' when the broker is
    another Redis, and the caller publishes the task after), and the entry that wakes
    the relaying API process' stream reader (api/streaming/hub.py) to read the new stream.
    OPEN_LUA is the only code that executes one, inside the admission script
    (core/gate.py) or alone (OPEN_SCRIPT)."""

    stream_key: str
    event: str
    data: str
    stream_ttl_seconds: int
    queue: str
    task_message: str
    wake_key: str
    wake_ttl_seconds: int

    def keys(self) -> list[str]:
        """OPEN_SCRIPT's KEYS, in its order."""
        return [self.stream_key, self.queue, self.wake_key]

    def args(self) -> list[str | int]:
        """OPEN_SCRIPT's ARGV, in its order."""
        return [
            self.event,
            self.data,
            self.stream_ttl_seconds,
            self.task_message,
            self.wake_ttl_seconds,
        ]


# Opens a stream from the names of its inputs: the admission script's prelude
# (core/start_script.py) declares them from its KEYS and ARGV, OPEN_SCRIPT below from
# `Opening.keys()` and `Opening.args()`. The only code that opens a stream.
OPEN_LUA = """
redis.call('XADD', stream_key, '*', 'event', start_event, 'data', start_data)
redis.call('EXPIRE', stream_key, stream_ttl_seconds)
if queue_key ~= '' then redis.call('LPUSH', queue_key, task_message) end
redis.call('XADD', wake_key, 'MAXLEN', '1', '*', 'w', '1')
redis.call('EXPIRE', wake_key, wake_ttl_seconds)
"""

# A stream opened on its own: a conversation turn's, once its rows are committed.
OPEN_SCRIPT = (
    "local stream_key, queue_key, wake_key = KEYS[1], KEYS[2], KEYS[3]\n"
    "local start_event, start_data, stream_ttl_seconds, task_message, wake_ttl_seconds"
    " = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n" + OPEN_LUA
)
OPEN_SHA = hashlib.sha1(OPEN_SCRIPT.encode()).hexdigest()
