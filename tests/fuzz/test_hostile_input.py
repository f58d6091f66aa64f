"""Hostile input, systematically: every field of every JSON body in the live OpenAPI
document made hostile in turn, plus broken bodies, path and query values.

Not sampled: each (operation, field, value) is one case. A case passes when the API
refuses the input the way API.md ("Errors") says (422 `validation_error` naming the
field on our routes, 400 in OpenAI's shape on the compatible ones), no table gained or
lost a row, and the same keep-alive TCP connection then answers `GET /healthz`.
Failures are collected and listed together at the end, each with the API log written
while it ran. The valid body each hostile one is made from is sent first (on its own
connection) and must not be a validation error: that is what shows the hostile value,
not the rest of the body, is what got refused.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from sqlalchemy import text

from api.errors import OPENAI_PATHS
from core.crypto import encrypt_secret
from core.db import sync_engine, worker_session
from core.security import password_hasher
from models import Base, PluginAccount
from tests.conftest import TEST_ENV
from tests.fakes.plugin_api import FakePluginApi

log = logging.getLogger(__name__)

pytestmark = pytest.mark.usefixtures("celery_worker")

PASSWORD = "correct horse battery staple"

# Routes that answer in OpenAI's error shape (API.md, "Errors", as api/errors.py decides);
# /v1/messages answers in Anthropic's.
OPENAI_ROUTES = OPENAI_PATHS
ANTHROPIC_ROUTES = ("/v1/messages",)

# Written into the body where the hostile value goes, then replaced in the JSON text:
# NaN, Infinity and 1e999 have no Python value that json.dumps writes as that token,
# and a lone surrogate cannot be UTF-8 encoded at all, only written as `\ud800`.
MARKER = "\ue000hostile\ue000"
STRING_VALUES = {
    "NUL": json.dumps("a\x00b"),
    "lone surrogate": json.dumps("a\ud800b"),
}
NUMBER_VALUES = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e999": "1e999"}
INTEGER_VALUES = {"2**64": str(2**64), "-2**63-1": str(-(2**63) - 1)}
SCALARS = ("string", "number", "integer")

BROKEN_BODIES = {
    "invalid UTF-8": b'{"x": "\xff\xfe"}',
    "malformed JSON": b'{"a": ',
    "nested 100 deep": b'{"x": ' + b"[" * 100 + b"]" * 100 + b"}",
    # Deep enough that a recursive parser runs out of stack, small enough for any limit.
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "NUL in a key": b'{"a\\u0000b": 1}',
    "lone surrogate in a key": b'{"a\\ud800b": 1}',
}
# FastAPI reads a body without a Content-Type as JSON; one that says text is bytes to
# FastAPI, but a route that reads the body itself may still parse it as JSON.
CONTENT_TYPES = {"no Content-Type": None, "text/plain": "text/plain"}
# Raw request-target text, percent-encoded as a client would send it.
PATH_VALUES = {
    "NUL": "%00",
    "5000 chars": "a" * 5000,
    "..%2F": "..%2F",
    "..%2F traversal": "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "encoded surrogate": "%ED%A0%80",
}
NOT_A_UUID = "not-a-uuid"
QUERY_VALUE = "%00"
# Header parameters (a stream's Last-Event-ID): NUL cannot be sent in a header at all;
# these are ids that are not ids, and ids that look right but overflow Redis' 64 bits.
HEADER_VALUES = {
    "not an id": "not-an-id",
    "2**64 milliseconds": f"{2**64}-0",
    "2**64 sequence": f"1-{2**64}",
    "5000 digits": "1" * 5000 + "-0",
}

# A valid chat answers in well under a second from the fake providers.
BASELINE_TIMEOUT = 20

# Schemas nest far less than this; it only stops a recursive $ref.
MAX_SCHEMA_DEPTH = 12


# --- the one keep-alive connection ---------------------------------------------------


class ConnectionDropped(Exception):
    pass


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def excerpt(self) -> str:
        shown = self.body[:400].decode("utf-8", "backslashreplace")
        if "location" in self.headers:
            shown = f"Location: {self.headers['location']} {shown}"
        return shown


class KeepAliveConnection:
    """HTTP/1.1 over one socket that is never silently reopened (httpx would reconnect
    without telling): a request after the server closed fails, and `reopen` is explicit
    and counted."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.opened = 0
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=BASELINE_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_address = self.sock.getsockname()
        self.buffer = b""
        self.opened += 1

    def reopen(self) -> None:
        self.sock.close()
        self._connect()

    def close(self) -> None:
        self.sock.close()

    def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> RawResponse:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.address[0]}:{self.address[1]}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.sock.sendall(head + (body or b""))
            return self._read_response(method)
        except OSError as exc:
            raise ConnectionDropped(f"{type(exc).__name__}: {exc}") from exc

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionDropped("the server closed the connection")
        self.buffer += chunk

    def _take_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _read_response(self, method: str) -> RawResponse:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while size := int(self._take_line().split(b";")[0], 16):
                parts.append(self._take(size))
                self._take_line()
            while self._take_line():
                pass
            body = b"".join(parts)
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        else:
            raise ConnectionDropped("a response without a length: it ends with the connection")
        return RawResponse(status, headers, body)


# --- the schema ----------------------------------------------------------------------


# eq=False: keyed by identity (the schema nodes they hold are dicts).
@dataclass(frozen=True, eq=False)
class Field:
    """A string or number somewhere in a body; `chain` is the schema chosen at each
    step from the body's root (an anyOf alternative, an array's items) down to it."""

    path: tuple[str | int, ...]
    kind: str
    chain: tuple[dict[str, Any], ...]

    @property
    def dotted(self) -> str:
        return ".".join(map(str, self.path))


@dataclass(frozen=True, eq=False)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def json_schema(self) -> dict[str, Any] | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        media = content.get("application/json")
        return media.get("schema") if media else None

    def form_schema(self) -> dict[str, Any] | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        media = content.get("application/x-www-form-urlencoded")
        return media.get("schema") if media else None

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]


class Schema:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def operations(self) -> Iterator[Operation]:
        for path, item in self.document["paths"].items():
            for method, spec in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    yield Operation(method.upper(), path, spec)

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def alternatives(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """The non-null shapes a value may take; an anyOf's examples stay with each."""
        node = self.resolve(node)
        shared = {k: node[k] for k in ("examples", "example", "default") if k in node}
        for key in ("anyOf", "oneOf"):
            if key in node:
                found = []
                for alternative in node[key]:
                    found += [{**shared, **a} for a in self.alternatives(alternative)]
                return found
        if len(node.get("allOf", ())) == 1:
            return [{**shared, **a} for a in self.alternatives(node["allOf"][0])]
        kind = node.get("type")
        if isinstance(kind, list):
            return [{**node, "type": k} for k in kind if k != "null"]
        return [] if kind == "null" else [node]

    def fields(self, root: dict[str, Any]) -> list[Field]:
        found: list[Field] = []

        def walk(node: dict[str, Any], path: tuple, chain: tuple, depth: int) -> None:
            if depth > MAX_SCHEMA_DEPTH:
                return
            for alt in self.alternatives(node):
                here = (*chain, alt)
                kind = alt.get("type")
                if kind in SCALARS:
                    found.append(Field(path, kind, here))
                elif kind == "object" or "properties" in alt:
                    for name, prop in alt.get("properties", {}).items():
                        walk(prop, (*path, name), here, depth + 1)
                elif kind == "array" and isinstance(alt.get("items"), dict):
                    walk(alt["items"], (*path, 0), here, depth + 1)

        walk(root, (), (), 0)
        return found

    def scalar_nodes(self, root: dict[str, Any]) -> int:
        """Every string/number/integer schema under `root`, counted without the walk
        above, so a construct that walk does not follow shows as missing cases."""

        def count(node: Any, depth: int) -> int:
            if depth > MAX_SCHEMA_DEPTH:
                return 0
            if isinstance(node, list):
                return sum(count(item, depth) for item in node)
            if not isinstance(node, dict):
                return 0
            if "$ref" in node:
                return count(self.resolve(node), depth + 1)
            kinds = node.get("type")
            kinds = kinds if isinstance(kinds, list) else [kinds]
            own = sum(1 for kind in kinds if kind in SCALARS)
            values = ("examples", "example", "default", "enum", "const")
            return own + sum(count(v, depth + 1) for k, v in node.items() if k not in values)

        return count(root, 0)


# --- valid values ----------------------------------------------------------------------


def _fits(schema: dict[str, Any], value: Any) -> bool:
    kind = schema.get("type")
    if value is None or isinstance(value, bool) != (kind == "boolean"):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if kind == "string":
        return (
            isinstance(value, str)
            and schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 1 << 30)
            and re.search(schema.get("pattern", ""), value) is not None
        )
    if kind in ("integer", "number"):
        if not isinstance(value, int | float) or (kind == "integer" and not isinstance(value, int)):
            return False
        return schema.get("minimum", value) <= value <= schema.get("maximum", value)
    return {"array": list, "object": dict, "boolean": bool}.get(kind, object) is type(value)


class ValidBodies:
    """Bodies the routes accept, from the schema's examples, defaults and types.

    `overrides` holds the few values no schema can know (the test user's password, ids
    of the resources made for the run), by (route path, field) or by field for all routes.
    """

    def __init__(self, schema: Schema, overrides: dict[Any, Any]) -> None:
        self.schema = schema
        self.overrides = overrides
        self.unique = itertools.count()

    def value(self, route: str, name: str | int | None, node: dict[str, Any]) -> Any:
        alternatives = self.schema.alternatives(node)
        return self.of(route, name, alternatives[0]) if alternatives else None

    def of(self, route: str, name: str | int | None, schema: dict[str, Any]) -> Any:
        for key in ((route, name), name):
            if key in self.overrides:
                return self.overrides[key]
        if "const" in schema:
            return schema["const"]
        candidates = [*schema.get("examples", ()), schema.get("example"), schema.get("default")]
        for candidate in candidates:
            if _fits(schema, candidate):
                return candidate
        if schema.get("enum"):
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            low, high = schema.get("minimum", 1), schema.get("maximum", 1)
            number = max(low, min(high, 1))
            return int(number) if kind == "integer" else number
        if kind == "boolean":
            return False
        if kind == "array":
            if schema.get("minItems", 0) == 0:
                return []
            return [self.value(route, None, schema.get("items", {}))]
        if kind == "object" or "properties" in schema:
            return self.typical(route, schema)
        return None

    def _string(self, schema: dict[str, Any]) -> str:
        n = next(self.unique)
        by_format = {
            "email": f"hostile-{n}-{uuid.uuid4().hex[:8]}@example.com",
            "uuid": str(uuid.uuid4()),
            "date-time": "2025-01-01T00:00:00Z",
            "date": "2025-01-01",
            "uri": "https://example.com/",
        }
        if schema.get("format") in by_format:
            return by_format[schema["format"]]
        return "x" * max(1, schema.get("minLength", 1))

    def typical(self, route: str, schema: dict[str, Any]) -> dict[str, Any]:
        """The required properties, and those with an example: a schema that requires
        less than a real request carries (a chat message's `content`) still shows it."""
        properties = schema.get("properties", {})
        required = schema.get("required", ())

        def shown(name: str) -> bool:
            examples = self.schema.resolve(properties[name]).get("examples", ())
            return name in required or any(example is not None for example in examples)

        return {
            name: self.value(route, name, prop) for name, prop in properties.items() if shown(name)
        }

    def for_field(self, route: str, field: Field) -> Any:
        """A typical valid body that holds `field`, with MARKER at its place."""

        def build(step: int) -> Any:
            schema = field.chain[step]
            if step == len(field.path):
                return MARKER
            key = field.path[step]
            if isinstance(key, int):
                return [build(step + 1)]
            body = self.typical(route, schema)
            body[key] = build(step + 1)
            return body

        return build(0)

    def filled(self, route: str, field: Field, body: Any) -> Any:
        """`body` with a valid value where MARKER is."""
        name = next((p for p in reversed(field.path) if isinstance(p, str)), None)
        good = self.of(route, name, field.chain[-1])
        return json.loads(json.dumps(body).replace(json.dumps(MARKER), json.dumps(good), 1))


def with_value(body: Any, token: str) -> bytes:
    """The body's JSON text with the raw token where MARKER is (ASCII: `\\ud800` escaped)."""
    encoded = json.dumps(body, ensure_ascii=True)
    assert encoded.count(json.dumps(MARKER)) == 1
    return encoded.replace(json.dumps(MARKER), token).encode("ascii")


def values_for(kind: str) -> dict[str, str]:
    # A NaN in a string field and a NUL in a number field are type errors: still refused.
    found = {**STRING_VALUES, **NUMBER_VALUES}
    return {**found, **INTEGER_VALUES} if kind == "integer" else found


# --- what an answer must be ----------------------------------------------------------


def envelope_problem(route: str, response: RawResponse) -> str | None:
    """Why the answer is not an error in the route's envelope, or None."""
    try:
        body = response.json()
    except ValueError:
        return "the answer is not JSON"
    if route.startswith(OPENAI_ROUTES):
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict) or not {"message", "type", "code", "param"} <= set(error):
            return "not OpenAI's {error: {message, type, code, param}}"
        if not isinstance(error["message"], str) or not isinstance(error["type"], str):
            return "OpenAI error without a message or a type"
        return None
    if route.startswith(ANTHROPIC_ROUTES):
        ok = isinstance(body, dict) and body.get("type") == "error"
        ok = (
            ok and isinstance(body.get("error"), dict) and {"type", "message"} <= set(body["error"])
        )
        return None if ok else "not Anthropic's {type: error, error: {type, message}}"
    if not isinstance(body, dict) or not isinstance(body.get("code"), str) or "detail" not in body:
        return "not our {detail, code} envelope"
    if response.status == 422:
        detail = body["detail"]
        if not isinstance(detail, list) or not detail:
            return "a 422 without a list in detail"
        for item in detail:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("loc"), list)
                and isinstance(item.get("msg"), str)
                and isinstance(item.get("type"), str)
            ):
                return f"a 422 item without loc/msg/type: {item!r:.200}"
    return None


def refusal_problem(route: str, response: RawResponse, loc: list[Any] | None) -> str | None:
    """Why the answer is not the input-rule refusal of API.md, or None.

    `loc` is where the refusal must point (`["body", "messages", 0, "content"]`), or None
    when the whole body is at fault.
    """
    compat = route.startswith(OPENAI_ROUTES + ANTHROPIC_ROUTES)
    expected = 400 if compat else 422
    if response.status != expected:
        return f"status {response.status}, expected {expected}"
    if problem := envelope_problem(route, response):
        return problem
    body = response.json()
    if route.startswith(OPENAI_ROUTES):
        param = ".".join(str(p) for p in (loc or ())[1:]) or None
        if loc and loc[0] == "body" and body["error"]["param"] != param:
            return f"param {body['error']['param']!r}, expected {param!r}"
        return None
    if compat:
        return None
    if body["code"] != "validation_error":
        return f"code {body['code']!r}, expected 'validation_error'"
    if loc is not None and not any(item["loc"] == loc for item in body["detail"]):
        return f"no detail item at {loc}: {[item['loc'] for item in body['detail']]}"
    return None


def is_validation_error(route: str, status: int, body: Any) -> bool:
    if status == 422:
        return True
    code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
    return status == 400 and route.startswith(OPENAI_ROUTES) and code == "validation_error"


# --- the run ----------------------------------------------------------------------------


class RowCounts:
    def __init__(self) -> None:
        tables = [t.name for t in Base.metadata.sorted_tables]
        self.names = tables
        self.query = text("SELECT " + ", ".join(f'(SELECT count(*) FROM "{t}")' for t in tables))
        self.conn = sync_engine().connect().execution_options(isolation_level="AUTOCOMMIT")

    def now(self) -> dict[str, int]:
        return dict(zip(self.names, self.conn.execute(self.query).one(), strict=True))

    def busy_generations(self) -> int:
        query = text("SELECT count(*) FROM generations WHERE status IN ('queued', 'running')")
        return self.conn.execute(query).scalar_one()

    def settle(self, timeout: float = 60) -> dict[str, int]:
        """The counts once the worker has finished what the valid requests started
        (replies, titles, provisioning), so a change during a case is that case's."""
        deadline = time.monotonic() + timeout
        last = self.now()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            current = self.now()
            if current == last and not self.busy_generations():
                return current
            last = current
        raise AssertionError(f"the database did not settle in {timeout} s: {last}")

    def close(self) -> None:
        self.conn.close()


class Run:
    """Sends each case on the one connection and keeps every failure."""

    def __init__(self, conn: KeepAliveConnection, counts: RowCounts, log_path: Path) -> None:
        self.conn = conn
        self.counts = counts
        self.log_path = log_path
        self.before = counts.now()
        self.cases = 0
        self.failures: list[str] = []

    def case(
        self,
        label: str,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None,
        judge: Callable[[RawResponse], str | None],
    ) -> None:
        self.cases += 1
        log_start = self.log_path.stat().st_size
        problems: list[str] = []
        response: RawResponse | None = None
        try:
            response = self.conn.request(method, target, headers, body)
        except ConnectionDropped as exc:
            problems.append(f"no answer: {exc}")
        else:
            if response.status >= 500:
                problems.append(f"a server error ({response.status})")
            elif problem := judge(response):
                problems.append(problem)
            if response.headers.get("connection", "").lower() == "close":
                problems.append("the answer closes the keep-alive connection")
        dropped = response is None
        if response is not None:
            try:
                health = self.conn.request("GET", "/healthz")
            except ConnectionDropped as exc:
                dropped = True
                problems.append(f"the next request on the same connection failed: {exc}")
            else:
                if health.status != 200:
                    problems.append(f"GET /healthz next on the same connection: {health.status}")
        after = self.counts.now()
        if changed := {t: (self.before[t], n) for t, n in after.items() if self.before[t] != n}:
            problems.append(f"rows changed (before, after): {changed}")
        self.before = after
        if problems:
            self._fail(label, problems, response, log_start)
        if dropped:
            self.conn.reopen()

    def _fail(
        self, label: str, problems: list[str], response: RawResponse | None, log_start: int
    ) -> None:
        lines = [f"{label}: " + "; ".join(problems)]
        if response is not None:
            lines.append(f"    answer {response.status}: {response.excerpt()}")
        with open(self.log_path, "rb") as api_log:
            api_log.seek(log_start)
            written = api_log.read().decode("utf-8", "replace")
        if "Traceback" in written or "ERROR" in written:
            lines.append("    API log: " + _our_frames(written).replace("\n", "\n    "))
        self.failures.append("\n".join(lines))


def _our_frames(log_text: str) -> str:
    """The log from its first traceback on, without the frames inside libraries."""
    start = log_text.find("Traceback")
    if start < 0:
        return log_text[-2000:]
    kept, in_library = [], False
    for line in log_text[start:].splitlines():
        if line.startswith('  File "'):
            in_library = "site-packages" in line
        elif not line.startswith("    "):
            in_library = False
        if not in_library:
            kept.append(line)
    return "\n".join(kept)[:4000]


def _skipped(op: Operation) -> bool:
    # Logout would end the test user's session (if the input rules let a body through,
    # the route ignores it and logs out), and every later case would then be a 401.
    return op.path.rsplit("/", 1)[-1] == "logout"


def _takes_json(op: Operation) -> bool:
    # Multipart-only routes take no JSON: their own upload tests cover them. WebSocket
    # routes are not in the OpenAPI document at all (the WebSocket tests cover them). A
    # route that declares no body is held to the body rules all the same (API.md makes
    # no exception), so a broken body is sent to it too.
    content = op.spec.get("requestBody", {}).get("content")
    return content is None or any("json" in media for media in content)


def case_floor(schema: Schema) -> int:
    """How many cases the document calls for, counted from it without the case builders,
    so that a field or route they stop reaching (a new schema construct, a media type
    spelled differently) fails the test instead of quietly dropping its cases."""
    floor = 0
    for op in schema.operations():
        if _skipped(op):
            continue
        content = op.spec.get("requestBody", {}).get("content", {})
        for media, spec in content.items():
            if "json" in media:
                per_field = len(values_for("number")) + len(STRING_VALUES) * len(CONTENT_TYPES)
                floor += schema.scalar_nodes(spec.get("schema", {})) * per_field
                break
        if op.method in ("POST", "PUT", "PATCH") and _takes_json(op):
            floor += len(BROKEN_BODIES)
        floor += len(op.parameters("path")) * len(PATH_VALUES) + len(op.parameters("query"))
        floor += len(op.parameters("header")) * len(HEADER_VALUES)
    return floor


# Today's document gives about 1050 cases; far fewer means routes left the document.
MIN_CASES = 900


class Suite:
    """The resources the cases name, and the cases, grouped by where the value goes."""

    def __init__(
        self, schema: Schema, http: httpx.Client, path_values: dict[str, str], valid: ValidBodies
    ) -> None:
        self.schema = schema
        self.http = http
        self.path_values = path_values
        self.valid = valid
        self.auth = {"Authorization": http.headers["Authorization"]}
        self.json_headers = {**self.auth, "Content-Type": "application/json"}
        self.operations = [op for op in schema.operations() if not _skipped(op)]
        self.fields = {
            op: schema.fields(root)
            for op in self.operations
            if (root := op.json_schema()) is not None
        }
        self.bodies: dict[tuple[Operation, Field], Any] = {}
        self.failures: list[str] = []

    def path_of(self, op: Operation, hostile: tuple[str, str] | None = None) -> str:
        target = op.path
        for param in op.parameters("path"):
            name = param["name"]
            if hostile and hostile[0] == name:
                value = hostile[1]  # already as it goes on the wire
            elif name in self.path_values:
                value = quote(self.path_values[name], safe="")
            else:
                value = quote(str(self.valid.value(op.path, name, param.get("schema", {}))))
            target = target.replace("{" + name + "}", value)
        return target

    def baselines(self, form_body: dict[str, str]) -> None:
        """Each hostile body's valid twin, over httpx: it must not be refused."""
        for op, fields in self.fields.items():
            hung = False
            for field in fields:
                body = self.bodies[op, field] = self.valid.for_field(op.path, field)
                if hung:
                    continue
                good = self.valid.filled(op.path, field, body)
                headers = self.json_headers
                try:
                    answer = self.http.request(
                        op.method, self.path_of(op), content=json.dumps(good), headers=headers
                    )
                except httpx.TimeoutException:
                    # Reported once: the operation's other valid bodies would hang too.
                    hung = True
                    self.failures.append(
                        f"{op.label} baseline for {field.dotted} = {good!r:.300}: no answer in "
                        f"{BASELINE_TIMEOUT} s"
                    )
                    continue
                try:
                    content = answer.json()
                except ValueError:
                    content = None
                if answer.status_code >= 500 or is_validation_error(
                    op.path, answer.status_code, content
                ):
                    self.failures.append(
                        f"{op.label} baseline for {field.dotted} = {good!r:.300}: the valid "
                        f"body answers {answer.status_code}: {answer.text[:400]}"
                    )
        for op in self.operations:
            if op.form_schema() is not None:
                answer = self.http.request(op.method, self.path_of(op), data=form_body)
                if answer.status_code >= 500 or answer.status_code == 422:
                    self.failures.append(
                        f"{op.label} form baseline answers {answer.status_code}: {answer.text}"
                    )

    def body_fields(self, run: Run) -> None:
        for op, fields in self.fields.items():
            for field in fields:
                loc = ["body", *field.path]
                for label, token in values_for(field.kind).items():
                    run.case(
                        f"{op.label} body.{field.dotted} = {label}",
                        op.method,
                        self.path_of(op),
                        self.json_headers,
                        with_value(self.bodies[op, field], token),
                        lambda r, op=op, loc=loc: refusal_problem(op.path, r, loc),
                    )

    def form_fields(self, run: Run, form_body: dict[str, str]) -> None:
        """The OAuth2 password form of the login routes: the same rules as JSON."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        for op in self.operations:
            if (form := op.form_schema()) is None:
                continue
            for name in form.get("properties", {}):
                raw = "&".join(
                    f"{key}={'a%00b' if key == name else quote(value, safe='')}"
                    for key, value in {**form_body, name: ""}.items()
                )
                run.case(
                    f"{op.label} form {name} = NUL",
                    op.method,
                    self.path_of(op),
                    headers,
                    raw.encode(),
                    lambda r, op=op, name=name: refusal_problem(op.path, r, ["body", name]),
                )
            run.case(
                f"{op.label} form = invalid UTF-8",
                op.method,
                self.path_of(op),
                headers,
                b"username=\xff\xfe&password=x",
                lambda r, op=op: refusal_problem(op.path, r, None),
            )

    def broken_bodies(self, run: Run) -> None:
        for op in self.operations:
            if op.method not in ("POST", "PUT", "PATCH") or not _takes_json(op):
                continue
            for label, raw in BROKEN_BODIES.items():
                run.case(
                    f"{op.label} body = {label}",
                    op.method,
                    self.path_of(op),
                    self.json_headers,
                    raw,
                    lambda r, op=op: refusal_problem(op.path, r, None),
                )

    def content_types(self, run: Run) -> None:
        """The hostile strings again, in bodies that do not say they are JSON: the input
        rules must not depend on a header the client chooses."""
        for op, fields in self.fields.items():
            for field in fields:
                for label, token in STRING_VALUES.items():
                    body = with_value(self.bodies[op, field], token)
                    for type_label, content_type in CONTENT_TYPES.items():
                        headers = dict(self.auth)
                        if content_type:
                            headers["Content-Type"] = content_type
                        run.case(
                            f"{op.label} body.{field.dotted} = {label}, {type_label}",
                            op.method,
                            self.path_of(op),
                            headers,
                            body,
                            lambda r, op=op: refusal_problem(op.path, r, None),
                        )

    def parameters(self, run: Run) -> None:
        for op in self.operations:
            # The rest of the request valid, so only the hostile value can be refused.
            body, headers = None, self.auth
            if (root := op.json_schema()) is not None:
                body = json.dumps(self.valid.value(op.path, None, root)).encode()
                headers = self.json_headers
            for param in op.parameters("path"):
                name = param["name"]
                hostile = dict(PATH_VALUES)
                if param.get("schema", {}).get("format") == "uuid":
                    hostile["not a UUID"] = NOT_A_UUID
                for label, value in hostile.items():
                    run.case(
                        f"{op.label} path {name} = {label}",
                        op.method,
                        self.path_of(op, (name, value)),
                        headers,
                        body,
                        lambda r, op=op, label=label, name=name: _path_problem(op, r, label, name),
                    )
            for param in op.parameters("query"):
                name = param["name"]
                others = [
                    f"{p['name']}={quote(str(self.valid.value(op.path, p['name'], p['schema'])))}"
                    for p in op.parameters("query")
                    if p.get("required") and p["name"] != name
                ]
                hostile = {"NUL": QUERY_VALUE}
                if any(
                    a.get("type") == "integer" for a in self.schema.alternatives(param["schema"])
                ):
                    hostile["2**64"] = str(2**64)
                for label, value in hostile.items():
                    run.case(
                        f"{op.label} query {name} = {label}",
                        op.method,
                        f"{self.path_of(op)}?{'&'.join([*others, f'{name}={value}'])}",
                        headers,
                        body,
                        lambda r, op=op, name=name: refusal_problem(op.path, r, ["query", name]),
                    )
            for param in op.parameters("header"):
                name = param["name"]
                for label, value in HEADER_VALUES.items():
                    run.case(
                        f"{op.label} header {name} = {label}",
                        op.method,
                        self.path_of(op),
                        {**headers, name: value},
                        body,
                        lambda r, op=op: _refused_in_envelope(op, r),
                    )


def _path_problem(op: Operation, response: RawResponse, label: str, name: str) -> str | None:
    if label == "NUL":
        return refusal_problem(op.path, response, None)
    if label == "not a UUID":
        return refusal_problem(op.path, response, ["path", name])
    # The rest may be refused as unknown (404) or invalid (422): either, in the envelope.
    return _refused_in_envelope(op, response)


def _refused_in_envelope(op: Operation, response: RawResponse) -> str | None:
    if not 400 <= response.status < 500:
        return f"status {response.status}, expected a 4xx"
    return envelope_problem(op.path, response)


def _resources(
    http: httpx.Client, user, target_user, fake_plugin_api: FakePluginApi
) -> tuple[dict[str, str], dict[Any, Any]]:
    """What the path parameters and a few fields name, made through the API: the path
    values, and the field values no schema can know."""
    conversation = http.post("/v1/conversations", json={}).raise_for_status().json()
    config = http.post(
        "/v1/model-configs",
        json={"base_url": "https://1.1.1.1/v1", "model": "m", "api_key": "sk-fuzz"},
    ).raise_for_status()
    api_key = http.post("/v1/developer/api-keys", json={"name": "fuzz"}).raise_for_status()
    chat = http.post(f"/v1/conversations/{conversation['id']}/chat", json={"content": "Hi"})
    login = http.post("/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    # An active plug-in-api account, so its routes reach their body checks (a pending
    # one is refused before the body is read).
    plugin_user = fake_plugin_api.add_user(f"switchboard-{user.id}")
    cookie_id = fake_plugin_api.link_account(plugin_user)["cookie_id"]
    with worker_session() as session:
        session.add(
            PluginAccount(
                user_id=user.id,
                plugin_user_id=plugin_user.user_id,
                api_key_encrypted=encrypt_secret(plugin_user.api_key),
                status="active",
            )
        )
    path_values = {
        "conversation_id": conversation["id"],
        "config_id": config.json()["id"],
        "key_id": api_key.json()["id"],
        "generation_id": chat.raise_for_status().json()["generation_id"],
        "user_id": str(target_user.id),
        "cookie_id": cookie_id,
        "provider": "linuxdo",
    }
    fields = {
        # The test user's own password: the login, email and password routes check it,
        # and a password change to the same one keeps it valid for the next.
        "password": PASSWORD,
        "current_password": PASSWORD,
        "new_password": PASSWORD,
        ("/v1/auth/login", "email"): user.email,
        # Single use (rotation): only one body of the refresh route is ever valid.
        "refresh_token": login.raise_for_status().json()["refresh_token"],
        # The SSRF check resolves names; a literal public address needs no DNS in CI.
        "base_url": "https://1.1.1.1/v1",
        "model_config_id": config.json()["id"],
    }
    return path_values, fields


def test_every_field_of_every_body_refuses_hostile_values(
    api_server: str, make_user, fake_plugin_api: FakePluginApi
) -> None:
    # A superuser (the admin routes) on the top plan (rate limits far above this run).
    user = make_user(plan="max", is_superuser=True, password_hash=password_hasher.hash(PASSWORD))
    auth = {"Authorization": f"Bearer {user.access_token}"}
    http = httpx.Client(base_url=api_server, headers=auth, timeout=BASELINE_TIMEOUT)
    schema = Schema(http.get("/openapi.json").raise_for_status().json())
    path_values, field_values = _resources(http, user, make_user(), fake_plugin_api)
    suite = Suite(schema, http, path_values, ValidBodies(schema, field_values))
    # The login form's valid values; sent after the JSON login, before the email changes.
    form_body = {"username": user.email, "password": PASSWORD}
    suite.baselines(form_body)

    counts = RowCounts()
    counts.settle()
    port = urlsplit(api_server).port
    assert port is not None
    conn = KeepAliveConnection("127.0.0.1", port)
    run = Run(conn, counts, Path(TEST_ENV["DATA_DIR"]) / f"api-{port}.log")
    try:
        suite.body_fields(run)
        suite.form_fields(run, form_body)
        suite.broken_bodies(run)
        suite.content_types(run)
        suite.parameters(run)
    finally:
        conn.close()
        counts.close()
    ready = http.get("/readyz")
    http.close()

    floor = case_floor(schema)
    log.info(
        "hostile input: %d cases (floor %d) on %d connection(s)", run.cases, floor, conn.opened
    )
    assert ready.status_code == 200, ready.text
    assert run.cases >= max(floor, MIN_CASES), (run.cases, floor)
    failures = suite.failures + run.failures
    if failures:
        pytest.fail(
            f"{len(failures)} of {run.cases} cases failed:\n\n" + "\n\n".join(failures),
            pytrace=False,
        )
