"""Schemathesis over the running API's /openapi.json, every operation, authenticated
as a fresh user: no answer may be a 5xx, and none may break its own documented schema.

Schemathesis seldom draws a NUL and never a lone surrogate (its strings are UTF-8)
or a number that is not finite, so about half the examples get one value made hostile,
drawn here by Hypothesis alongside the case: a body leaf becomes a string with
NUL or a lone surrogate, NaN, +-Infinity, 1e999 or 2**64 (sent as raw tokens: the
body goes out as bytes, since requests refuses to encode NaN), or a query or path
value gets a NUL. Those must be
refused (400 or 422, API.md "Errors"). Examples are bounded per operation
(FUZZ_EXAMPLES) so CI stays short; tests/fuzz/test_hostile_input.py covers every
field with every value, this adds the values in the shapes schemathesis draws.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import response_schema_conformance

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))

log = logging.getLogger(__name__)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("celery_worker")]

NUL = "a\x00b"
# Stands for the token 1e999 until the body is written: Python has no value json.dumps
# writes that way (an infinite float comes out as `Infinity`, which is drawn too).
HUGE = "\ue0001e999\ue000"
JSON_VALUES = [NUL, "a\ud800b", math.nan, math.inf, -math.inf, HUGE, 2**64]


def _leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to the strings and numbers in a drawn body."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _leaves(item, (*path, key))]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _leaves(item, (*path, index))]
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return [path]
    return []


def _replaced(body: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    body = copy.deepcopy(body)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return body


def _json_bytes(body: Any) -> bytes:
    # ensure_ascii writes a lone surrogate as `\ud800`; allow_nan writes NaN/Infinity.
    text = json.dumps(body, ensure_ascii=True, allow_nan=True)
    return text.replace(json.dumps(HUGE), "1e999").encode("ascii")


def _make_hostile(case, data: st.DataObject) -> tuple[str | None, dict[str, Any]]:
    """Maybe one hostile value in `case`: where it went (None: nowhere), and the call's
    keyword arguments (a JSON body schemathesis cannot write itself goes as bytes)."""
    is_json = case.media_type is not None and "json" in case.media_type
    has_body = not isinstance(case.body, NotSet)
    kwargs: dict[str, Any] = {}
    if has_body and is_json:
        kwargs["data"] = _json_bytes(case.body)
    # A form is flat: a nested value is not written at all, so only its fields can carry one.
    leaves = [p for p in _leaves(case.body) if is_json or len(p) == 1] if has_body else []
    places = ["body"] if leaves else []
    places += [f"query {name}" for name in case.query or {}]
    places += [f"path {name}" for name in case.path_parameters or {}]
    if not places or not data.draw(st.booleans(), label="hostile"):
        return None, kwargs
    place = data.draw(st.sampled_from(places), label="place")
    if place == "body":
        path = data.draw(st.sampled_from(leaves), label="leaf")
        # A form can only carry text: requests cannot encode a surrogate, numbers are text.
        value = data.draw(st.sampled_from(JSON_VALUES if is_json else [NUL]), label="value")
        body = _replaced(case.body, path, value)
        if is_json:
            kwargs["data"] = _json_bytes(body)
        else:
            case.body = body
        return f"body {'.'.join(map(str, path))} = {value!r}", kwargs
    kind, name = place.split(" ", 1)
    container = case.query if kind == "query" else case.path_parameters
    container[name] = NUL
    return f"{place} = {NUL!r}", kwargs


def _fuzz(operation, headers: dict[str, str], counts: dict[str, int]) -> None:
    @given(case=operation.as_strategy(), data=st.data())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case, data: st.DataObject) -> None:
        hostile, kwargs = _make_hostile(case, data)
        response = case.call_and_validate(
            headers=headers,
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
            **kwargs,
        )
        if hostile is not None:
            counts["hostile"] += 1
            assert response.status_code in (400, 422), (
                f"{hostile} answered {response.status_code}: {response.text[:300]}"
            )

    run()


def test_no_server_errors_and_answers_match_their_schema(api_server: str, make_user) -> None:
    # The worker (fixture above) answers chats the fuzzer starts, so streams end.
    schema = schemathesis.openapi.from_url(api_server + "/openapi.json")
    failures: list[str] = []
    operations = 0
    counts = {"hostile": 0}
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # A fresh user per operation: an earlier one may have logged out or deleted itself.
        user = make_user()
        try:
            _fuzz(operation, {"Authorization": f"Bearer {user.access_token}"}, counts)
        # Schemathesis reports failures as an exception group: collected, so one run
        # lists every failing operation.
        except (AssertionError, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    log.info("schemathesis: %d operations, %d hostile examples", operations, counts["hostile"])
    assert operations > 40
    # The hostile values really went out: most operations have something to carry one.
    assert counts["hostile"] >= operations, counts
    assert not failures, "\n\n".join(failures)
