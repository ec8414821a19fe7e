"""``totp-sidecar doctor``: ask the app's who-am-I URL exactly as the sidecar would, and say
what came back and what is wrong.

The given cookies and headers become a request (an ASGI scope) read by the sidecar's one door;
the sidecar's own resolver then calls the URL through a transport that records the answer.
Exit 0 when a user (or an explicit "nobody is logged in") was read, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

import httpx

from sidecar.cli.common import app_config, config_path, load
from sidecar.config import Config
from sidecar.errors import Ambiguous, UpstreamUnavailable
from sidecar.primary import IntrospectResolver, Resolved, Resolver
from sidecar.wiring import make_door, make_resolver


@dataclass
class Seen:
    """What the who-am-I URL answered (the last call)."""

    status: int | None = None
    location: str = ""
    content_type: str = ""
    seconds: float = 0.0
    body: bytes = b""
    error: str = ""
    lines: list[str] = field(default_factory=list)


class Recorder(httpx.AsyncBaseTransport):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = await self.inner.handle_async_request(request)
            body = await response.aread()
        except httpx.HTTPError as exc:
            self.seen.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.seen.seconds = time.perf_counter() - started
        self.seen.status = response.status_code
        self.seen.location = response.headers.get("location", "")
        self.seen.content_type = response.headers.get("content-type", "")
        self.seen.body = body
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def scope(cookies: list[str], headers: list[str], peer: str) -> dict[str, object]:
    """The request the proxy would send: each --cookie a Cookie line, each --header a header."""
    raw = [(b"cookie", c.encode("latin-1", "replace")) for c in cookies]
    for line in headers:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"totp-sidecar doctor: --header {line!r}: write it as 'Name: value'")
        raw.append((name.strip().lower().encode("latin-1", "replace"),
                    value.strip().encode("latin-1", "replace")))
    return {"type": "http", "method": "GET", "path": "/", "headers": raw,
            "client": (peer, 0)}


def _hint(config: Config, seen: Seen, failure: str) -> str:
    """What is wrong, in words an operator can act on."""
    settings = config.primary.introspect
    status = seen.status
    if seen.error:
        return f"the URL cannot be reached ({seen.error}): is the app running, and the URL right?"
    if status is not None and 300 <= status < 400:
        return (f"{status} to {seen.location or '(no Location)'}: the URL needs the session "
                "cookie or is not an API endpoint")
    if status != 200:
        return f"{status}: the sidecar needs 200 (a user), or 401/403 (nobody logged in)"
    try:
        data = json.loads(seen.body)
    except ValueError:
        return f"200 but not JSON (content type {seen.content_type or 'none'})"
    if f"no {settings.user_key!r} in the answer" in failure:
        keys = (", ".join(sorted(map(str, data))[:20]) if isinstance(data, dict)
                else f"none (a JSON {type(data).__name__})")
        return (f"200 but no {settings.user_key!r} key; keys seen: {keys} "
                "(set primary.introspect.user_key)")
    return failure.partition(": ")[2] or failure


async def _doctor(config: Config, args: argparse.Namespace, seen: Seen) -> int:
    door = make_door(config)
    reading = door.read(scope(args.cookie, args.header, args.peer))
    out = seen.lines
    out.append(f"resolver: {config.primary.resolver}")
    if config.primary.resolver == "introspect":
        out.append(f"url: {config.primary.introspect.url}")
    if reading.problem:
        out.append(f"problem: the request is ambiguous: {reading.problem}; the sidecar "
                   "refuses it (401 ambiguous_request)")
        return 1
    named = config.primary.session_cookies
    if named and (args.cookie and not any(reading.cookie(n) for n in named)):
        out.append(f"problem: none of primary.session_cookies ({', '.join(named)}) is in the "
                   f"cookies given (names seen: {', '.join(n for n, _ in reading.cookies.pairs)})")
        return 1
    resolver: Resolver
    if config.primary.resolver == "introspect":
        resolver = IntrospectResolver(config, transport=Recorder(seen))
        if not reading.has_credential and not reading.authorization:
            out.append("problem: no credential: give --cookie (the app's session cookie) or "
                       "--header 'Authorization: …'")
            return 1
    else:
        resolver = make_resolver(config)
        if not reading.trusted:
            out.append(f"problem: {args.peer} is not in server.trusted_proxies: the identity "
                       "headers are not believed (give --peer)")
            return 1
    try:
        resolved: Resolved | None = await resolver.resolve(reading)
        failure = ""
    except (UpstreamUnavailable, Ambiguous) as exc:
        resolved, failure = None, str(exc)
    finally:
        await resolver.aclose()
    if seen.status is not None or seen.error:
        out.append(f"status: {seen.status if seen.status is not None else '(no answer)'}")
        if seen.location:
            out.append(f"redirect: {seen.location}")
        out.append(f"content type: {seen.content_type or '(none)'}")
        out.append(f"time: {seen.seconds * 1000:.0f} ms")
    if resolved is None:
        out.append(f"problem: {_hint(config, seen, failure)}")
        return 1
    identity = resolved.identity
    if identity is None:
        out.append("user: (nobody is logged in: the sidecar treats this request as anonymous)")
        return 0
    out.append(f"user: {identity.user}")
    out.append(f"email: {identity.email or '(none)'}")
    out.append(f"name: {identity.name or '(none)'}")
    out.append(f"groups: {', '.join(identity.groups) or '(none)'}")
    out.append("ok")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    app = app_config(load(config_path(args)), args.app)
    if app is None:
        return 1
    config = app.config  # the app's own primary: its who-am-I URL, cookies and headers
    logging.getLogger("sidecar").setLevel(logging.CRITICAL)  # the findings are printed below
    seen = Seen()
    try:
        return asyncio.run(_doctor(config, args, seen))
    finally:
        print("\n".join(seen.lines))
