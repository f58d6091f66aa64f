"""The start script's layout is stated once (core/start_script.py): the fragments
read keys and arguments only by name, and the verdicts are Python's."""

from __future__ import annotations

import re

from core.gate import START_SCRIPT
from core.start_script import StartKeys, StartReply, Verdict, as_list, prelude


def test_only_the_prelude_indexes_keys_and_argv() -> None:
    body = START_SCRIPT.removeprefix(prelude())
    assert body != START_SCRIPT
    assert not re.search(r"\b(KEYS|ARGV)\[", body)
    assert not re.search(r"reply\{status = \d", body), "a verdict written as a number"


def test_lists_follow_the_field_order() -> None:
    keys = StartKeys("c", "u", "", "p", "s")
    assert as_list(keys) == ["c", "u", "", "p", "s", "", "", ""]
    for n, name in enumerate(["counter_key", "user_window_key", "key_window_key"], 1):
        assert f"local {name} = KEYS[{n}]" in prelude()
    assert "local request_id = ARGV[6]" in prelude()
    assert StartReply.parse([2, 7, 20, 0, 1500, 0]) == StartReply(
        Verdict.RATE_LIMITED, used=7, limit=20, wait_ms=1500
    )
