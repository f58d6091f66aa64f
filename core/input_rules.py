"""The input rules of API.md ("Errors"), stated once for every way input arrives.

A JSON document is parsed strictly: valid UTF-8, no `NaN`/`Infinity`, no number
that is not finite once read (`1e999`), no integer outside 64 bits (orjson, the
queue's encoder, and PostgreSQL's bigint cannot carry one), no string with NUL
(PostgreSQL refuses it in text) or an unpaired surrogate (no encoder can write
it), and no nesting deeper than `MAX_DEPTH`. Query strings, paths and form fields
are held to the string rules. Each refusal names where it was found in FastAPI's
validation item shape (`loc`, `msg`, `type`), so every caller can answer it the
way its route answers a validation error. No FastAPI import: the API's edge
middleware and the WebSocket both use it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import orjson

# Deep enough for any real JSON schema in `tools`, far below the point where an
# encoder or the recursive walk below would fail.
MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Python refuses to read integers longer than this (sys.int_info); anything near it is
# out of range anyway, so the length check runs first and cheaply.
_MAX_INT_DIGITS = 20
# At most this many refusals are listed: one hostile body must not make a huge answer.
_MAX_ISSUES = 10

Loc = tuple[str | int, ...]


class InputRejected(ValueError):
    """Refused input; `issues` are FastAPI-shaped validation items."""

    def __init__(self, issues: list[dict[str, Any]]) -> None:
        super().__init__(issues[0]["msg"] if issues else "invalid input")
        self.issues = issues


def issue(loc: Loc, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": kind}


class _Unreadable:
    """A number the parser met that the rules refuse; reported with its place by the walk."""

    __slots__ = ("kind", "msg")

    def __init__(self, msg: str, kind: str) -> None:
        self.msg = msg
        self.kind = kind


def _constant(name: str) -> _Unreadable:
    return _Unreadable(f"{name} is not a finite number.", "finite_number")


def _float(text: str) -> float | _Unreadable:
    value = float(text)
    if math.isfinite(value):
        return value
    return _Unreadable("The number is not finite.", "finite_number")


def _int(text: str) -> int | _Unreadable:
    digits = text.lstrip("-")
    if len(digits) <= _MAX_INT_DIGITS:
        value = int(text)
        if INT64_MIN <= value <= INT64_MAX:
            return value
    return _Unreadable("The integer does not fit in 64 bits.", "int_range")


_DECODER = json.JSONDecoder(
    parse_float=_float, parse_int=_int, parse_constant=_constant, strict=True
)


def string_problem(value: str) -> tuple[str, str] | None:
    """Why a string may not be stored or carried, as (message, type), or None."""
    if "\x00" in value:
        return "The text contains a NUL character.", "string_nul"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "The text contains an unpaired surrogate.", "string_surrogate"
    return None


# NUL, which PostgreSQL refuses in text, and lone surrogates, which no UTF-8 encoder
# writes (to PostgreSQL or to a stream's JSON).
_UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """Text we did not refuse but must keep (a provider's answer) as PostgreSQL stores it:
    NUL dropped, a lone surrogate made U+FFFD."""
    return _UNSTORABLE_CHARACTERS.sub(lambda found: "" if found[0] == "\x00" else "\ufffd", text)


def _walk(value: Any, loc: Loc, depth: int) -> Iterator[dict[str, Any]]:
    if isinstance(value, str):
        if problem := string_problem(value):
            yield issue(loc, *problem)
    elif isinstance(value, _Unreadable):
        yield issue(loc, value.msg, value.kind)
    elif isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            yield issue(loc, f"Nested deeper than {MAX_DEPTH} levels.", "too_deep")
            return
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from _walk(item, (*loc, index), depth + 1)
            return
        for key, item in value.items():
            if problem := string_problem(key):
                yield issue((*loc, _printable(key)), *problem)
            else:
                yield from _walk(item, (*loc, key), depth + 1)


def _printable(key: str) -> str:
    """A refused key, named so that the answer itself can be encoded."""
    return key.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")


def _first(issues: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for item in issues:
        found.append(item)
        if len(found) == _MAX_ISSUES:
            break
    return found


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
# An integer token this long may not fit in 64 bits (the close look decides).
_LONG_NUMBER = re.compile(r"\d{19,}")
_SPACE = re.compile(r"[ \t\n\r]*")
_BRACKETS = re.compile(r"[\[\]{}]")


def _plainly_valid(text: str) -> Any:
    """The document, when a cheap look proves it breaks no rule; else None, which means
    "look closely" (the close look in Python costs seconds on a 32 MiB body).

    orjson refuses invalid UTF-8, lone surrogates, NaN, Infinity and 1e999 itself; what
    it lets through, a NUL escape, a long integer or deep nesting, sends the document
    to the close look.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if "\\u0000" in text or _LONG_NUMBER.search(text):
        return None
    depth = 0
    for char in _BRACKETS.findall(_STRING.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return None
        elif char in "]}":
            depth -= 1
    return value


def parse_json(raw: bytes | str, loc: Loc = ("body",)) -> Any:
    """The document in `raw`, or InputRejected naming every refused place (up to ten)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputRejected(
                [issue(loc, f"The body is not valid UTF-8 (byte {exc.start}).", "utf8_invalid")]
            ) from None
    if (plain := _plainly_valid(raw)) is not None:
        return plain
    try:
        value, end = _DECODER.raw_decode(raw, _skip_space(raw, 0))
        if _skip_space(raw, end) != len(raw):
            raise json.JSONDecodeError("Extra data", raw, end)
    except json.JSONDecodeError as exc:
        raise InputRejected(
            [issue(loc, f"Invalid JSON: {exc.msg} at character {exc.pos}.", "json_invalid")]
        ) from None
    except RecursionError:
        raise InputRejected(
            [issue(loc, f"Nested deeper than {MAX_DEPTH} levels.", "too_deep")]
        ) from None
    if issues := _first(_walk(value, loc, 0)):
        raise InputRejected(issues)
    return value


def _skip_space(text: str, start: int) -> int:
    match = _SPACE.match(text, start)
    return match.end() if match else start


def check_strings(pairs: list[tuple[str, str]], loc: Loc) -> None:
    """Query parameters or form fields: raise InputRejected for any refused name or value."""
    issues = _first(
        issue((*loc, _printable(name)), *problem)
        for name, value in pairs
        for problem in (string_problem(name), string_problem(value))
        if problem
    )
    if issues:
        raise InputRejected(issues)
