"""Who is logged in to the app: the primary session.

Two resolvers. ``header`` reads a header set by the proxy or an upstream authenticator
(believed only from trusted peers). ``introspect`` asks the app's own "who am I" URL with the
request's cookies (or Authorization) and caches the answer per credential for a few seconds;
concurrent misses for one credential make a single upstream call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Protocol

import httpx

from sidecar.config import Config
from sidecar.errors import UpstreamUnavailable

log = logging.getLogger("sidecar.primary")
CACHE_LIMIT = 50_000
MAX_USER_LENGTH = 256
MAX_GROUPS = 64


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    email: str = ""
    name: str = ""
    groups: tuple[str, ...] = ()


def parse_cookies(header: str) -> dict[str, str]:
    """Cookie header → name→value (first wins), tolerant of junk."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        name, sep, value = chunk.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip()
    return cookies


@dataclass(frozen=True, slots=True)
class Credential:
    """What identifies the primary session of a request, without the sidecar's own cookies."""

    cookie_header: str  # to send to the app (sidecar cookies removed)
    authorization: str
    key: str  # the part that names the session; fingerprinted into the 2FA cookie

    @property
    def present(self) -> bool:
        return bool(self.key)


def credential(headers: dict[str, str], own_cookies: tuple[str, ...],
               session_cookies: tuple[str, ...]) -> Credential:
    cookies = parse_cookies(headers.get("cookie", ""))
    for name in own_cookies:
        cookies.pop(name, None)
    cookie_header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    authorization = headers.get("authorization", "")
    if session_cookies:
        named = [f"{n}={cookies[n]}" for n in session_cookies if cookies.get(n)]
    else:
        named = [f"{k}={v}" for k, v in sorted(cookies.items())]
    parts = named + ([f"authorization={authorization}"] if authorization else [])
    return Credential(cookie_header, authorization, "\n".join(parts))


def _clean(value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return ""
    text = str(value).strip()
    if len(text) > MAX_USER_LENGTH or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return ""
    return text


def _groups(value: Any) -> tuple[str, ...]:
    """Groups from a JSON list or a comma-separated string; junk entries are dropped."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    cleaned = (_clean(item) for item in items[:MAX_GROUPS])
    return tuple(sorted({g for g in cleaned if g and "," not in g}))


def _dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


class Resolver(Protocol):
    async def resolve(self, headers: dict[str, str], cred: Credential,
                      trusted: bool) -> Identity | None: ...

    async def aclose(self) -> None: ...


class HeaderResolver:
    def __init__(self, config: Config) -> None:
        self.names = config.primary.header

    async def resolve(self, headers: dict[str, str], cred: Credential,
                      trusted: bool) -> Identity | None:
        if not trusted:
            return None
        user = _clean(headers.get(self.names.user.lower(), ""))
        if not user:
            return None
        return Identity(user, _clean(headers.get(self.names.email.lower(), "")),
                        _clean(headers.get(self.names.name.lower(), "")),
                        _groups(headers.get(self.names.groups.lower(), "")))

    async def aclose(self) -> None:
        return None


class IntrospectResolver:
    def __init__(self, config: Config, client: httpx.AsyncClient | None = None) -> None:
        self.settings = config.primary.introspect
        # A jar that stores nothing: one user's cookies must never reach another's request.
        jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        self.client = client or httpx.AsyncClient(timeout=self.settings.timeout_seconds,
                                                  follow_redirects=False, cookies=jar)
        self._cache: dict[str, tuple[float, Identity | None]] = {}
        self._inflight: dict[str, asyncio.Future[Identity | None]] = {}
        self.calls = 0  # upstream calls made (observed by tests and metrics)

    async def resolve(self, headers: dict[str, str], cred: Credential,
                      trusted: bool) -> Identity | None:
        if not cred.present:
            return None
        now = time.monotonic()
        hit = self._cache.get(cred.key)
        if hit is not None and now - hit[0] < self.settings.cache_seconds:
            return hit[1]
        waiting = self._inflight.get(cred.key)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future[Identity | None] = asyncio.get_running_loop().create_future()
        self._inflight[cred.key] = future
        try:
            identity = await self._ask(cred)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(identity)
            if self.settings.cache_seconds:
                if len(self._cache) >= CACHE_LIMIT:
                    self._cache.clear()
                self._cache[cred.key] = (time.monotonic(), identity)
            return identity
        finally:
            self._inflight.pop(cred.key, None)

    async def _ask(self, cred: Credential) -> Identity | None:
        send = {"accept": "application/json"}
        if cred.cookie_header:
            send["cookie"] = cred.cookie_header
        if cred.authorization:
            send["authorization"] = cred.authorization
        self.calls += 1
        try:
            response = await self.client.get(self.settings.url, headers=send)
        except httpx.HTTPError as exc:
            log.warning("introspection failed: %s", type(exc).__name__)
            raise UpstreamUnavailable("the app's who-am-I URL cannot be reached") from None
        if response.status_code in (401, 403):
            return None
        if response.status_code != 200:
            log.warning("introspection answered %s", response.status_code)
            raise UpstreamUnavailable(f"the app's who-am-I URL answered {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise UpstreamUnavailable("the app's who-am-I URL did not answer JSON") from None
        user = _clean(_dig(data, self.settings.user_key))
        if not user:
            return None
        return Identity(user, _clean(_dig(data, self.settings.email_key)),
                        _clean(_dig(data, self.settings.name_key)),
                        _groups(_dig(data, self.settings.groups_key)))

    async def aclose(self) -> None:
        await self.client.aclose()


def make_resolver(config: Config) -> Resolver:
    if config.primary.resolver == "header":
        return HeaderResolver(config)
    return IntrospectResolver(config)
