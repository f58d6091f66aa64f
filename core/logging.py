"""Structured (JSON lines) logging for every process."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

# Credentials that travel in a query string: our WebSocket's `?token=`, OAuth's `code`,
# and the `key=` / `api_key=` some providers take. Only in query position (after `?`,
# `&` or `;`), so prose such as "exited with code 1" is untouched.
_SECRET_PARAMETER = re.compile(
    r"(?i)([?&;](?:[\w.-]*token|[\w.-]*secret|[\w.-]*password|api[_-]?key|apikey|key"
    r"|code|signature|sig|auth)=)[^&;#\s\"'<>]+"
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RedactSecrets(logging.Filter):
    """Blanks credential values in URLs a record's message carries.

    uvicorn logs each WebSocket handshake with its path and query string, where our
    clients put their access token (browsers cannot set headers on a WebSocket).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRET_PARAMETER.search(record.getMessage()) is None:
            return True
        # Redacted argument by argument where the secret is in one: formatters such as
        # uvicorn's access formatter unpack `args` and need them all, in their types.
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted_arg(arg) for arg in record.args)
        if _SECRET_PARAMETER.search(message := record.getMessage()) is not None:
            record.msg, record.args = _redact(message), None
        return True


def _redact(text: str) -> str:
    return _SECRET_PARAMETER.sub(r"\1<redacted>", text)


def _redacted_arg(arg: object) -> object:
    if isinstance(arg, int | float):
        return arg
    text = str(arg)
    return _redact(text) if _SECRET_PARAMETER.search(text) else arg


class TextFormatter(logging.Formatter):
    """Human-readable lines for development; extra fields follow as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        return line


def configure_logging(level: int = logging.INFO) -> None:
    from core.config import settings

    root = logging.getLogger()
    if getattr(root, "_switchboard_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    redact = RedactSecrets()
    handler.addFilter(redact)
    root.handlers = [handler]
    # uvicorn's loggers write through handlers of their own and do not propagate to ours
    # (its LOGGING_CONFIG): they get the filter where they write. A filter on a logger
    # would miss records of its children (uvicorn.error writes through "uvicorn").
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        for uvicorn_handler in logging.getLogger(name).handlers:
            uvicorn_handler.addFilter(redact)
    root.setLevel(level)
    root._switchboard_configured = True  # type: ignore[attr-defined]
    # No formatter here prints where a call came from; finding it walks the stack on every
    # record (the logging HOWTO's "Optimization" section), ~4 % of the API's CPU in a flood.
    logging._srcfile = None
    for noisy in ("httpx", "httpcore", "uvicorn.access", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
