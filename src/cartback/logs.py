"""Logging: structlog in front of the standard library, so cartback's own lines, uvicorn's and any
library's come out in one format: JSON objects one per line (CARTBACK_LOG_FORMAT=json) or aligned text
(console); `auto` picks console on a terminal and JSON otherwise.

Every line logged while a request is being handled carries its `request_id` and, once the API key is
known, its `workspace_id` (see `request_scope`). A last processor masks email addresses and anything
shaped like a cartback API key, wherever they appear, as a safety net behind not logging them at all.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog

# Fields of the request being handled. A dict shared by reference, so a dependency deep inside the
# request (which may run in a copied context) can add the workspace for the access line to report.
_request: ContextVar[dict[str, Any] | None] = ContextVar("cartback_request", default=None)

_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# store/workspaces.KEY_PREFIX + token_urlsafe(32); also `whsec_` webhook secrets.
_SECRET = re.compile(r"\b(cb_|whsec_)[A-Za-z0-9_+/=-]{8,}")


@contextlib.contextmanager
def request_scope(**fields: Any) -> Iterator[dict[str, Any]]:
    """Bind `fields` to every line logged until the block ends; returns the dict, which `note` extends."""
    scope = dict(fields)
    token = _request.set(scope)
    try:
        yield scope
    finally:
        _request.reset(token)


def note(**fields: Any) -> None:
    """Add fields to the current request's log lines (no-op outside a request)."""
    scope = _request.get()
    if scope is not None:
        scope.update(fields)


def redact(text: str) -> str:
    """Mask email addresses (keeping the first letter and the domain) and API key / webhook secrets."""
    if "@" in text:
        text = _EMAIL.sub(r"\1***@\2", text)
    if "cb_" in text or "whsec_" in text:
        text = _SECRET.sub(r"\1[redacted]", text)
    return text


def _add_request(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    scope = _request.get()
    if scope:
        for key, value in scope.items():
            event.setdefault(key, value)
    return event


def _drop_noise(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
    return event


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


def _json(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=repr).decode()


def configure(log_format: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Route every logger (cartback's, uvicorn's, libraries') through one handler on `stream` (stderr)."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    # Tracebacks become text before _redact, so they are masked too.
    tail = [structlog.processors.format_exc_info, _redact, renderer]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_noise],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    global _json_lines
    if _json_lines is not None:
        _json_lines.flush()
    _json_lines = _Lines(handler) if log_format == "json" else None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Alembic announces every plugin it loads; the migrations it runs stay visible.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # uvicorn configures its own loggers unless told not to; send them to ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True


class _Lines:
    """Lines of JSON for one handler's stream, written together once per turn of the event loop.

    The access log writes a line per request. Through `logging` that is a record, structlog's processors
    and a write (a system call, during which another thread may take the interpreter lock) on the event
    loop for every request; here the line is rendered directly, to the same JSON, and the lines of every
    request answered in one turn of the loop go out in one write at the start of the next."""

    def __init__(self, handler: logging.StreamHandler[TextIO]) -> None:
        self.handler = handler
        self._lines: list[str] = []
        self._scheduled = False
        atexit.register(self.flush)

    def add(self, line: str) -> None:
        self._lines.append(line)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: nothing to wait for
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        lines, self._lines = self._lines, []
        if lines:
            # A stream closed under it (a test's captured output, at exit) loses the lines, as logging would.
            with self.handler.lock, contextlib.suppress(ValueError, OSError):  # type: ignore[union-attr]
                self.handler.stream.write("".join(lines))
                self.handler.flush()


# The JSON handler `configure` installed, while it is the root logger's only one; None otherwise.
_json_lines: _Lines | None = None


def _timestamp() -> str:
    # What structlog's TimeStamper(fmt="iso", utc=True) writes.
    return datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")


def write_line(logger: logging.Logger, level: int, event: str, fields: dict[str, Any]) -> None:
    """`logger.log(level, event, extra=fields)`, with what `configure` formats that as (in JSON: the same
    keys, in the same order, redacted alike) rendered directly when it can be, and written with the lines
    of the same turn of the event loop."""
    lines = _json_lines
    root = logging.getLogger()
    if lines is None or root.handlers != [lines.handler] or logger.handlers or not logger.propagate:
        logger.log(level, event, extra=fields)
        return
    line: dict[str, Any] = {
        "event": event,
        "level": logging.getLevelName(level).lower(),
        "logger": logger.name,
        "timestamp": _timestamp(),
    }
    scope = _request.get()
    if scope:
        for key, value in scope.items():
            line.setdefault(key, value)
    line.update(fields)
    for key, value in line.items():
        if isinstance(value, str):
            line[key] = redact(value)
    lines.add(_json(line) + "\n")


def get(name: str) -> Any:
    """A structlog logger: `log.info("what happened", key=value, ...)`."""
    return structlog.stdlib.get_logger(name)
