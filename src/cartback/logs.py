"""Logging: structlog in front of the standard library, so cartback's own lines, uvicorn's and any
library's come out in one format: JSON objects one per line (CARTBACK_LOG_FORMAT=json) or aligned text
(console); `auto` picks console on a terminal and JSON otherwise.

Every line logged while a request is being handled carries its `request_id` and, once the API key is
known, its `workspace_id` (see `request_scope`). A last processor masks email addresses and anything
shaped like a cartback API key, wherever they appear, as a safety net behind not logging them at all.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
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


def get(name: str) -> Any:
    """A structlog logger: `log.info("what happened", key=value, ...)`."""
    return structlog.stdlib.get_logger(name)
