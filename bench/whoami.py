"""The app's who-am-I URL for the benchmarks (``primary.introspect.url``): a raw ASGI app.

``GET`` with a Cookie ``sessionid=s-<u>`` (the app session of ``common.sign_cookies``) answers
200 ``{"user": "<u>"}``; no such cookie (or two different ones) answers 401 (nobody logged
in). Any other method: 405. ``GET /_stub/calls`` answers how many who-am-I questions were
answered so far (plain text), so that a benchmark can tell how often the sidecar asked.
Run by uvicorn as its own process, pinned like the servers under test:

    python -m uvicorn bench.whoami:app --port 8001
"""

from __future__ import annotations

import json
from typing import Any

SESSION = b"sessionid"
PREFIX = b"s-"
CALLS_PATH = "/_stub/calls"
_JSON = [(b"content-type", b"application/json")]
_calls = 0


def user_of(cookie_header: bytes) -> str | None:
    """The user named by the ``sessionid=s-<u>`` cookie, or None."""
    found: set[bytes] = set()
    for part in cookie_header.split(b";"):
        name, eq, value = part.strip().partition(b"=")
        if eq and name == SESSION:
            found.add(value)
    if len(found) != 1:
        return None
    (value,) = found
    if not value.startswith(PREFIX) or len(value) == len(PREFIX):
        return None
    return value[len(PREFIX):].decode("latin-1")


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _calls
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] != "GET":
        await _send(send, 405, b"", [(b"allow", b"GET")])
        return
    if scope["path"] == CALLS_PATH:
        await _send(send, 200, str(_calls).encode(), [(b"content-type", b"text/plain")])
        return
    _calls += 1
    cookie = b"; ".join(v for k, v in scope["headers"] if k == b"cookie")
    user = user_of(cookie)
    if user is None:
        await _send(send, 401, b'{"user": null}', _JSON)
        return
    await _send(send, 200, json.dumps({"user": user}).encode(), _JSON)
