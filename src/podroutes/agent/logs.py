"""Structured logs: one JSON object per line (or ``key=value`` text), on a stream.

I/O setup only (a ``logging`` handler on an injected stream). The agent's modules log
with ``logging`` and put structured fields in ``extra={"fields": {...}}``; this formatter
writes them as top-level keys beside ``ts``, ``level``, ``logger`` and ``msg``, so a log
pipeline (Loki, Elasticsearch, journald's JSON) can filter on ``node``, ``trigger``,
``dst`` without parsing prose. Set up by :mod:`podroutes.cli.agent`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, TextIO

_RESERVED = ("ts", "level", "logger", "msg")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return {k: v for k, v in fields.items() if k not in _RESERVED} if isinstance(
        fields, dict) else {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        extra = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()}"
        return f"{line} {extra}" if extra else line


def setup(stream: TextIO, level: str = "info", fmt: str = "json") -> logging.Logger:
    """Send the ``podroutes`` loggers to ``stream``; returns the agent's logger."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("podroutes")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    return logging.getLogger("podroutes.agent")
