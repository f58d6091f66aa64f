"""The layout of the start script (core/gate.py), stated once: its KEYS, its ARGV,
its reply and its verdicts, each by name.

The script's fragments (core/quota.py, core/admission.py, core/gate.py) never write
`KEYS[n]` or `ARGV[n]`: the prelude generated here binds every key and argument to
a Lua local named after its field, and the verdict codes to locals named after the
`Verdict` members, so Python and Lua cannot disagree about a position or a code.
Fragments answer with `reply{status = ..., used = ..., ...}`, whose fields are
`StartReply`'s; a field left out is 0.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from enum import IntEnum


class Verdict(IntEnum):
    ADMITTED = 0
    # Redis lost the period's counter: call again with PostgreSQL's count as the seed.
    NEEDS_SEED = 1
    RATE_LIMITED = 2
    QUOTA_EXCEEDED = 3
    POOL_FULL = 4
    USER_FULL = 5


@dataclass(frozen=True, slots=True)
class StartKeys:
    counter_key: str
    user_window_key: str
    key_window_key: str  # '' without an API key
    pool_key: str
    user_slots_key: str
    # A stateless completion's opening ('' for none): its stream, the broker's queue
    # list and the relaying process' wake stream.
    stream_key: str = ""
    queue_key: str = ""
    wake_key: str = ""


@dataclass(frozen=True, slots=True)
class StartArgs:
    monthly_limit: int
    plan_rpm: int
    key_rpm: int  # 0 = none
    seed: int  # -1 until the script asked for one
    counter_ttl_seconds: int
    request_id: str  # the generation id: the reservation's member in every set
    window_ms: int
    pool_limit: int
    user_stream_limit: int
    slot_ttl_ms: int
    # The opening, when there is one: the stream's first entry, the task message.
    start_event: str = ""
    start_data: str = ""
    stream_ttl_seconds: int = 0
    task_message: str = ""
    wake_ttl_seconds: int = 0


@dataclass(frozen=True, slots=True)
class StartReply:
    status: Verdict
    used: int = 0
    limit: int = 0  # the binding per-minute limit
    remaining: int = 0  # left in that window
    wait_ms: int = 0  # until a slot of that window frees
    in_pool: int = 0  # the pool's slots in use, this one included

    @classmethod
    def parse(cls, raw: list[int]) -> StartReply:
        status, *rest = (int(value) for value in raw)
        return cls(Verdict(status), *rest)


def _names(cls: type) -> list[str]:
    return [field.name for field in fields(cls)]


def prelude() -> str:
    """The Lua that binds the layout's names; every start script begins with it."""
    lines = [
        f"local {name} = {array}[{n}]"
        for names, array in ((_names(StartKeys), "KEYS"), (_names(StartArgs), "ARGV"))
        for n, name in enumerate(names, 1)
    ]
    lines += [f"local {verdict.name} = {verdict.value}" for verdict in Verdict]
    # `or 0`: a nil would end the Lua array (and the reply) early.
    reply_fields = ", ".join(f"r.{name} or 0" for name in _names(StartReply))
    lines.append(f"local function reply(r) return {{{reply_fields}}} end")
    return "\n".join(lines) + "\n"


def as_list(values: StartKeys | StartArgs) -> list[str | int]:
    """The KEYS or ARGV list, in the order the prelude reads it."""
    return list(astuple(values))
