"""Logging configured once: one JSON object per line on stderr.

Fields passed with ``extra=`` (event, user, client, ...) become JSON keys. Nothing here ever
receives a secret, a code or a cookie value: callers log events and names, not values.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import time

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName",
                                                    "color_message"}  # uvicorn's ANSI copy
#: uvicorn's own loggers write through the same handler, in the same format.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

#: The id of the request being handled, in every log line written while handling it.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def new_request_id(offered: str = "") -> str:
    """The proxy's X-Request-Id when it looks like one (nginx: $request_id), else a fresh id."""
    return offered if _REQUEST_ID.fullmatch(offered) else secrets.token_hex(8)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if rid := request_id.get():
            data["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("sidecar")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in SERVER_LOGGERS:
        server = logging.getLogger(name)
        server.handlers[:] = [handler] if name == "uvicorn" else []
        server.propagate = name != "uvicorn"
        server.setLevel(level.upper())
