"""One GET to the app's who-am-I URL: the bytes of the credential out, status and body back.

``AiohttpFetch`` is what a running sidecar uses: aiohttp's client costs a few tens of
microseconds of CPU per call where httpx's costs several hundred, and ten times that with
dozens of calls in flight (its connection pool re-scans every connection for every request;
bench/RESULTS.md, part 5) — on the path of every request whose credential is not in the
who-am-I cache. ``HttpxFetch`` serves callers that hand in an httpx client or transport (the
tests' in-process apps, ``totp-sidecar doctor``'s recording transport).

Both send exactly the bytes the app receives. aiohttp encodes header values as UTF-8, so a
value is passed to it decoded from UTF-8 and arrives unchanged; a credential whose bytes are
not UTF-8 cannot be sent unchanged and is refused (``Ambiguous``) rather than altered.
Neither follows a redirect nor keeps a cookie: one user's cookies never reach another's call.
"""

from __future__ import annotations

import re
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from sidecar import __version__
from sidecar.errors import Ambiguous

USER_AGENT = f"totp-sidecar/{__version__}"
CONNECTIONS = 100  # at most this many calls in flight; more wait for a connection
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # aiohttp refuses them (a bare ValueError)


class FetchError(Exception):
    """The URL could not be asked (refused, reset, timed out); the message names the kind."""


class Fetch(Protocol):
    async def get(self, url: str, headers: dict[bytes, bytes]) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


class AiohttpFetch:
    """aiohttp, one session made at the first call (it must be made inside the event loop)."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self._session: Any = None

    def _open(self) -> Any:
        import aiohttp  # loaded by the introspect resolver only

        self._session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
            connector=aiohttp.TCPConnector(limit=CONNECTIONS, ttl_dns_cache=10),
            headers={"User-Agent": USER_AGENT})
        return self._session

    async def get(self, url: str, headers: dict[bytes, bytes]) -> tuple[int, bytes]:
        import aiohttp

        sent: dict[str, str] = {}
        for name, value in headers.items():
            try:
                sent[name.decode("ascii")] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise Ambiguous(f"header {name.decode('ascii', 'replace')} holds bytes that are "
                                "not UTF-8: they cannot be passed on to the app unchanged") from None
            if _CONTROL.search(sent[name.decode("ascii")]):
                raise Ambiguous(f"header {name.decode('ascii', 'replace')} holds control "
                                "characters: they cannot be passed on to the app unchanged")
        # aiohttp would send user information of the URL as its own Authorization (instead of
        # none, or refuse alongside the request's): never a credential the app did not get
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise FetchError("the URL holds user information")
        session = self._session or self._open()
        try:
            async with session.get(url, headers=sent, allow_redirects=False) as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise FetchError(type(exc).__name__) from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class HttpxFetch:
    """httpx, with the client or transport a caller hands in."""

    def __init__(self, timeout_seconds: float, client: httpx.AsyncClient | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))  # stores nothing
        self.client = client or httpx.AsyncClient(
            timeout=timeout_seconds, follow_redirects=False, cookies=jar, transport=transport,
            headers={"user-agent": USER_AGENT})

    async def get(self, url: str, headers: dict[bytes, bytes]) -> tuple[int, bytes]:
        try:
            response = await self.client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise FetchError(type(exc).__name__) from None
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self.client.aclose()
