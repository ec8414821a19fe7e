"""Who is logged in to the app: the primary session.

Two resolvers. ``header`` reads the identity headers set by the proxy or an upstream
authenticator (believed only from trusted peers; read by ``sidecar.core.request``). ``introspect``
asks the app's own "who am I" URL with exactly the credential the app receives (every Cookie
line joined, and ``Authorization``) and caches the answer per credential for
``cache_seconds``; concurrent misses for one credential make a single upstream call.

A who-am-I answer is read strictly: 401/403, or an explicit ``null`` along the configured
key's path (``{"actor": null}`` for ``actor.id``), mean "nobody is logged in"; a 200 without a
usable user id is an error (the key is misconfigured), never "anonymous".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from sidecar.config import Config
from sidecar.core.forwarded import CONTROL_CHARACTERS
from sidecar.core.logins import MARKS_KEPT_SECONDS, Logins, Tokens, session_tokens
from sidecar.core.request import Reading
from sidecar.errors import Ambiguous, UpstreamUnavailable
from sidecar.fetch import AiohttpFetch, Fetch, FetchError, HttpxFetch

log = logging.getLogger("sidecar.primary")
CACHE_LIMIT = 50_000
MAX_USER_LENGTH = 256
MAX_GROUPS = 64
FOREVER = math.inf


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    email: str = ""
    name: str = ""
    groups: tuple[str, ...] = ()
    key: str = ""  # the user's storage key in the app's namespace ("": the raw user id)

    @property
    def storage_key(self) -> str:
        """Whose 2FA state this is: the user in the app's users namespace."""
        return self.key or self.user


@dataclass(frozen=True, slots=True)
class Resolved:
    """Who is logged in (None: nobody), and until when (monotonic) that answer may be reused."""

    identity: Identity | None
    until: float = FOREVER


@dataclass(frozen=True, slots=True)
class Credential:
    """What the app is sent to say who is logged in: the request's cookies and Authorization."""

    cookie_header: str
    authorization: str
    tokens: Tokens = ()  # the session it is (``sidecar.core.logins``): what a login marks

    @property
    def present(self) -> bool:
        return bool(self.cookie_header or self.authorization)

    def cache_key(self) -> bytes:
        text = f"{self.cookie_header}\x00{self.authorization}"
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _clean(value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return ""
    text = str(value).strip()
    if len(text) > MAX_USER_LENGTH or CONTROL_CHARACTERS.search(text):
        return ""
    return text


def _groups(value: Any) -> tuple[str, ...]:
    """Groups from a JSON list or a comma-separated string; junk entries are dropped."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    cleaned = (_clean(item) for item in items[:MAX_GROUPS])
    return tuple(sorted({g for g in cleaned if g and "," not in g}))


class _Missing(Exception):
    """The configured key is not in the answer."""


def _dig(data: Any, dotted: str, strict: bool) -> Any:
    """The value at ``dotted``; None when a step is an explicit null.

    ``strict``: a missing key or a step that is not an object raises _Missing; otherwise
    (optional keys: e-mail, name, groups) it is simply None.
    """
    for part in dotted.split("."):
        if data is None:
            return None
        if not isinstance(data, dict) or part not in data:
            if strict:
                raise _Missing(part)
            return None
        data = data[part]
    return data


class _Unusable(UpstreamUnavailable):
    """A who-am-I call that gave no usable answer, and of which kind (for the metrics)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Resolver(Protocol):
    async def resolve(self, reading: Reading) -> Resolved: ...

    async def resolve_credential(self, cred: Credential) -> Resolved: ...

    async def aclose(self) -> None: ...


class HeaderResolver:
    """The identity headers of a trusted proxy (read, and refused when ambiguous, by the door)."""

    def __init__(self, config: Config) -> None:
        self.names = config.primary.header

    async def resolve(self, reading: Reading) -> Resolved:
        if not reading.trusted:
            return Resolved(None)
        raw_user, email, name, groups = reading.identity
        if not raw_user:
            return Resolved(None)
        user = _clean(raw_user)
        if not user:
            raise Ambiguous(f"header {self.names.user} holds no usable user name")
        return Resolved(Identity(user, _clean(email), _clean(name), _groups(groups)))

    async def resolve_credential(self, cred: Credential) -> Resolved:
        return Resolved(None)

    async def aclose(self) -> None:
        return None


class IntrospectResolver:
    def __init__(self, config: Config, client: httpx.AsyncClient | None = None,
                 monotonic: Any = time.monotonic,
                 transport: httpx.AsyncBaseTransport | None = None,
                 observe: Callable[[str, float], None] | None = None,
                 logins: Logins | None = None) -> None:
        """``client`` or ``transport``: ask through httpx (in-process apps, ``doctor``);
        otherwise through aiohttp (``sidecar.fetch``). ``logins``: the sidecar's marks of
        unsafe requests (one for every app; its own when not given)."""
        self.settings = config.primary.introspect
        timeout = self.settings.timeout_seconds
        self.fetch: Fetch = (HttpxFetch(timeout, client, transport) if client or transport
                             else AiohttpFetch(timeout))
        self.monotonic = monotonic
        self.logins = logins if logins is not None else Logins(monotonic)
        #: set when one credential named two users in turn (the app keeps session ids)
        self.keeps_session_ids = False
        #: credential → (answer, the mark it was asked from), in order of the answers' end
        self._cache: OrderedDict[bytes, tuple[Resolved, int]] = OrderedDict()
        self._inflight: dict[bytes, tuple[asyncio.Future[Resolved], int]] = {}
        self.calls = 0  # upstream calls made (observed by tests and metrics)
        self.where = _where(self.settings.url)
        #: told of every call: its outcome (user, anonymous, or an error kind) and its time
        self.observe = observe or (lambda outcome, seconds: None)

    async def resolve(self, reading: Reading) -> Resolved:
        return await self.resolve_credential(Credential(
            reading.cookies.header, reading.authorization,
            session_tokens(reading.session_key, reading.authorization)))

    async def resolve_credential(self, cred: Credential) -> Resolved:
        """The app's answer for ``cred``: kept ``cache_seconds``, but never past an unsafe
        request of its session (``Logins.mark``), and none kept for ``cache_seconds`` after
        one (the app may still be logging someone else into that session)."""
        if not cred.present:
            return Resolved(None)
        key = cred.cache_key()
        logins = self.logins
        hit = self._cache.get(key)
        if hit is not None and hit[0].until > self.monotonic() and logins.keeps(cred.tokens, hit[1]):
            return hit[0]
        waiting = self._inflight.get(key)
        if waiting is not None and logins.keeps(cred.tokens, waiting[1]):
            return await asyncio.shield(waiting[0])
        since = logins.seq
        future: asyncio.Future[Resolved] = asyncio.get_running_loop().create_future()
        self._inflight[key] = (future, since)
        try:
            identity = await self._ask(cred)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            if hit is not None:
                self._notice_a_switch(hit[0].identity, identity)
            seconds = 0 if self.keeps_session_ids else self.settings.cache_seconds
            # a session marked lately keeps nothing: its login may not have reached the app yet
            # (the proxy asks when the headers came; the body, and the login, may come later)
            kept = bool(seconds) and logins.keeps(cred.tokens, since, quiet=MARKS_KEPT_SECONDS)
            resolved = Resolved(identity, self.monotonic() + (seconds if kept else 0))
            future.set_result(resolved)
            if kept:
                self._cache.pop(key, None)
                self._cache[key] = (resolved, since)
                self._prune()
            return resolved
        finally:
            if self._inflight.get(key, (None, 0))[0] is future:
                del self._inflight[key]

    def _notice_a_switch(self, before: Identity | None, now: Identity | None) -> None:
        """The same credential bytes naming another user: the app logged someone else into a
        session it kept. Its who-am-I answers are not cached any more (until a restart)."""
        if before is None or now is None or before.user == now.user or self.keeps_session_ids:
            return
        self.keeps_session_ids = True
        self._cache.clear()
        log.error("%s named %s, then %s for the very same session: the app keeps its session id "
                  "across a login, so its who-am-I answers are no longer cached (set "
                  "primary.introspect.cache_seconds: 0)", self.where, before.user, now.user,
                  extra={"event": "session_switched", "url": self.where})

    def _prune(self) -> None:
        """Drop the answers that ended, and the oldest beyond the limit: stored in order of
        their end (one ``cache_seconds`` each), so only the front needs looking at."""
        cache, now = self._cache, self.monotonic()
        while cache and (len(cache) > CACHE_LIMIT or next(iter(cache.values()))[0].until <= now):
            cache.popitem(last=False)

    def _fail(self, kind: str, what: str, status: int | None = None,
              keys: str = "") -> UpstreamUnavailable:
        log.error("who-am-I answer unusable: %s %s (status %s)", self.where, what,
                  status if status is not None else "none",
                  extra={"event": "whoami_failed", "kind": kind, "url": self.where,
                         "status": status, "keys": keys})
        return _Unusable(kind, f"the app's who-am-I URL {self.where}: {what}")

    async def _ask(self, cred: Credential) -> Identity | None:
        started = time.perf_counter()
        try:
            identity = await self._ask_once(cred)
        except _Unusable as exc:
            self.observe(exc.kind, time.perf_counter() - started)
            raise
        self.observe("anonymous" if identity is None else "user", time.perf_counter() - started)
        return identity

    async def _ask_once(self, cred: Credential) -> Identity | None:
        # the very bytes the app receives (the door decoded them as latin-1): never re-encoded
        send: dict[bytes, bytes] = {b"accept": b"application/json"}
        if cred.cookie_header:
            send[b"cookie"] = cred.cookie_header.encode("latin-1", "replace")
        if cred.authorization:
            send[b"authorization"] = cred.authorization.encode("latin-1", "replace")
        self.calls += 1
        try:
            status, body = await self.fetch.get(self.settings.url, send)
        except FetchError as exc:
            raise self._fail("unreachable", f"cannot be reached ({exc})") from None
        if status in (401, 403):
            return None
        if status != 200:
            raise self._fail("status", f"answered {status}", status)
        try:
            data = json.loads(body)
        except ValueError:
            raise self._fail("not_json", "did not answer JSON", status) from None
        keys = ", ".join(sorted(map(str, data))[:20]) if isinstance(data, dict) else type(data).__name__
        try:
            value = _dig(data, self.settings.user_key, strict=True)
        except _Missing:
            raise self._fail("no_user", f"no {self.settings.user_key!r} in the answer", status,
                             keys) from None
        if value is None:
            return None  # an explicit null: nobody is logged in
        user = _clean(value)
        if not user:
            raise self._fail("bad_user", f"{self.settings.user_key!r} is not a usable user id",
                             status, keys)
        return Identity(user, _clean(_dig(data, self.settings.email_key, strict=False)),
                        _clean(_dig(data, self.settings.name_key, strict=False)),
                        _groups(_dig(data, self.settings.groups_key, strict=False)))

    async def aclose(self) -> None:
        await self.fetch.aclose()


def _where(url: str) -> str:
    """The who-am-I URL without user information or query (which may hold a secret)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
