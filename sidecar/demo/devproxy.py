"""A development reverse proxy that follows nginx's ``auth_request`` rules.

It lets the whole flow (app + sidecar) run behind one port without nginx:

* ``{prefix}`` and ``{prefix}/...`` go straight to the sidecar, with no auth subrequest;
* every other request first triggers ``GET {sidecar}/auth/nginx`` (no body, original headers,
  ``X-Original-URL``/``X-Original-Method``/``X-Forwarded-For``), then, like nginx:
  2xx forwards to the app with the ``Remote-*`` headers of the subrequest response (and any
  ``Set-Cookie`` it set added to the final response); 401 with ``Location`` becomes a 302
  (the usual ``error_page 401`` mapping); 401 without it and 403 are returned as they are;
  anything else, including a connection error, is a 500 and the app is never called.

Client-sent ``Remote-*`` headers (also spelt with underscores) are stripped from every upstream
request so that they cannot be spoofed. This is a development tool: it buffers whole bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

AUTH_PATH = "/auth/nginx"
TIMEOUT_SECONDS = 10.0

#: Headers the auth subrequest response passes to the app, as request headers.
IDENTITY_HEADERS = ("remote-user", "remote-email", "remote-name", "remote-groups")
#: Headers of a 401 auth response that are copied to the client.
CHALLENGE_HEADERS = ("www-authenticate", "x-otp")
#: Headers set by the proxy itself; any client-sent value is replaced.
FORWARDING_HEADERS = (
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-for",
    "x-original-url",
    "x-original-method",
)
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "trailers"}
)
#: Upstream response headers nginx hides by default (the proxy's server sets its own).
HIDDEN_RESPONSE_HEADERS = frozenset({"date", "server", "x-pad"})
_NO_BODY_STATUSES = frozenset({204, 304})

RawHeaders = list[tuple[bytes, bytes]]
HeaderList = list[tuple[str, str]]


def is_hop_by_hop(name: str, connection_tokens: Collection[str] = ()) -> bool:
    """Whether a (lower-case) header must not be forwarded by a proxy."""
    return name in HOP_BY_HOP or name.startswith("proxy-") or name in connection_tokens


def is_identity_header(name: str) -> bool:
    """``Remote-User`` and friends, also as ``Remote_User`` (which some backends merge)."""
    return name.replace("_", "-") in IDENTITY_HEADERS


def _connection_tokens(headers: HeaderList) -> set[str]:
    """Header names listed in ``Connection`` (they are hop-by-hop as well)."""
    tokens: set[str] = set()
    for name, value in headers:
        if name == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _scope_headers(scope: Scope) -> HeaderList:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]


def _client_ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _incoming_host(scope: Scope, headers: HeaderList) -> str:
    for name, value in headers:
        if name == "host":
            return value
    server = scope.get("server")
    if server and server[1] is not None:
        return f"{server[0]}:{server[1]}"
    return str(server[0]) if server else "localhost"


def _path_and_query(scope: Scope) -> str:
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def upstream_headers(headers: HeaderList, *, host: str, extra: HeaderList) -> HeaderList:
    """The client's headers minus hop-by-hop, Host, identity and forwarding ones, plus ``extra``.

    Host is set to the incoming Host, so that the upstream sees the public host name.
    """
    tokens = _connection_tokens(headers)
    overridden = {name for name, _ in extra} | set(FORWARDING_HEADERS)
    kept: HeaderList = []
    for name, value in headers:
        if is_hop_by_hop(name, tokens) or name in ("host", "content-length"):
            continue
        if is_identity_header(name) or name in overridden:
            continue
        kept.append((name, value))
    return [("host", host), *kept, *extra]


def _is_hidden(name: str) -> bool:
    return name in HIDDEN_RESPONSE_HEADERS or name.startswith("x-accel-")


def response_headers(response: httpx.Response, body_length: int, method: str) -> RawHeaders:
    """Upstream response headers for the client, keeping repeated ones (``Set-Cookie``)."""
    raw = [(k.lower(), v) for k, v in response.headers.raw]
    tokens = _connection_tokens([(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw])
    kept: RawHeaders = []
    upstream_length: bytes | None = None
    for name, value in raw:
        text = name.decode("latin-1")
        if text == "content-length":
            upstream_length = value
        elif not (is_hop_by_hop(text, tokens) or _is_hidden(text)):
            kept.append((name, value))
    if method == "HEAD" or response.status_code in _NO_BODY_STATUSES:
        if upstream_length is not None:
            kept.append((b"content-length", upstream_length))
    elif response.status_code >= 200:
        kept.append((b"content-length", str(body_length).encode("latin-1")))
    return kept


async def read_body(receive: Receive) -> bytes:
    """The whole request body (this proxy does not stream)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_response(send: Send, status: int, headers: RawHeaders, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_text(
    send: Send, status: int, text: str, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = text.encode("utf-8")
    headers: RawHeaders = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("latin-1")),
        *extra,
    ]
    await send_response(send, status, headers, body)


def _no_cookie_jar() -> CookieJar:
    """A jar that never stores a cookie: a proxy must not keep one client's cookies for others."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class DevProxy:
    """The ASGI app returned by :func:`create_dev_proxy`."""

    def __init__(self, app_url: str, sidecar_url: str, prefix: str = "/_2fa",
                 sidecar_paths: tuple[str, ...] = ()) -> None:
        if not prefix.startswith("/"):
            raise ValueError("prefix must start with '/'")
        self.app_url = app_url.rstrip("/")
        self.sidecar_url = sidecar_url.rstrip("/")
        self.prefix = prefix.rstrip("/") or "/"
        self.sidecar_paths = frozenset(sidecar_paths)  # exact paths the sidecar serves itself
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """One shared client, created on first use (inside the server's event loop)."""
        if self._client is None:
            client = httpx.AsyncClient(
                timeout=TIMEOUT_SECONDS, follow_redirects=False, cookies=_no_cookie_jar()
            )
            for name in ("accept", "accept-encoding", "user-agent"):
                # Forward exactly what the client sent; no httpx defaults.
                del client.headers[name]
            self._client = client
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def is_sidecar_path(self, path: str) -> bool:
        if self.prefix == "/" or path in self.sidecar_paths:
            return True
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        headers = _scope_headers(scope)
        host = _incoming_host(scope, headers)
        if self.is_sidecar_path(scope["path"]):
            await self._forward(self.sidecar_url, scope, headers, host, body, [], [], send)
            return
        try:
            auth = await self._auth_subrequest(scope, headers, host)
        except httpx.HTTPError as exc:
            logger.warning("auth subrequest failed: %r", exc)
            await send_text(send, 500, "auth service unavailable")
            return
        await self._apply_auth_result(auth, scope, headers, host, body, send)

    async def _auth_subrequest(
        self, scope: Scope, headers: HeaderList, host: str
    ) -> httpx.Response:
        scheme = scope.get("scheme", "http")
        extra: HeaderList = [
            ("x-original-url", f"{scheme}://{host}{_path_and_query(scope)}"),
            ("x-original-method", scope["method"]),
            *self._forwarding(scope, host),
        ]
        sub_headers = upstream_headers(headers, host=host, extra=extra)
        return await self.client.get(self.sidecar_url + AUTH_PATH, headers=sub_headers)

    async def _apply_auth_result(
        self,
        auth: httpx.Response,
        scope: Scope,
        headers: HeaderList,
        host: str,
        body: bytes,
        send: Send,
    ) -> None:
        status = auth.status_code
        if 200 <= status < 300:
            identity = [(n, v) for n, v in auth.headers.multi_items() if n in IDENTITY_HEADERS]
            cookies: RawHeaders = [
                (b"set-cookie", v) for k, v in auth.headers.raw if k.lower() == b"set-cookie"
            ]
            await self._forward(self.app_url, scope, headers, host, body, identity, cookies, send)
        elif status == 401 and "location" in auth.headers:
            location = auth.headers["location"].encode("latin-1")
            await send_text(send, 302, "Found", [(b"location", location), (b"cache-control", b"no-store")])
        elif status in (401, 403):
            await self._send_denial(auth, send)
        else:
            logger.warning("auth subrequest returned unexpected status %d", status)
            await send_text(send, 500, "auth service unavailable")

    async def _send_denial(self, auth: httpx.Response, send: Send) -> None:
        body = auth.content
        headers: RawHeaders = [(b"content-length", str(len(body)).encode("latin-1"))]
        content_type = auth.headers.get("content-type")
        if content_type:
            headers.append((b"content-type", content_type.encode("latin-1")))
        if auth.status_code == 401:
            for name, value in auth.headers.raw:
                if name.lower().decode("latin-1") in CHALLENGE_HEADERS:
                    headers.append((name.lower(), value))
        await send_response(send, auth.status_code, headers, body)

    def _forwarding(self, scope: Scope, host: str) -> HeaderList:
        forwarding: HeaderList = [
            ("x-forwarded-proto", scope.get("scheme", "http")),
            ("x-forwarded-host", host),
        ]
        client_ip = _client_ip(scope)
        if client_ip:
            forwarding.append(("x-forwarded-for", client_ip))
        return forwarding

    async def _forward(
        self,
        base_url: str,
        scope: Scope,
        headers: HeaderList,
        host: str,
        body: bytes,
        extra_request: HeaderList,
        extra_response: RawHeaders,
        send: Send,
    ) -> None:
        """Proxy the request to ``base_url`` and relay the answer (plus ``extra_response``)."""
        extra = [*self._forwarding(scope, host), *extra_request]
        if body or any(name in ("content-length", "transfer-encoding") for name, _ in headers):
            extra.append(("content-length", str(len(body))))
        request = self.client.build_request(
            scope["method"],
            base_url + _path_and_query(scope),
            headers=upstream_headers(headers, host=host, extra=extra),
            content=body,
        )
        try:
            response = await self.client.send(request, stream=True)
            try:
                payload = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            logger.warning("upstream %s failed: %r", base_url, exc)
            await send_text(send, 502, "bad gateway")
            return
        out = response_headers(response, len(payload), scope["method"])
        await send_response(send, response.status_code, [*out, *extra_response], payload)


def create_dev_proxy(app_url: str, sidecar_url: str, prefix: str = "/_2fa",
                     sidecar_paths: tuple[str, ...] = ()) -> ASGIApp:
    """An ASGI app proxying to ``app_url``, guarded by the sidecar at ``sidecar_url``.

    ``sidecar_paths`` (the password-reset gate's paths) go to the sidecar as they are.
    """
    return DevProxy(app_url, sidecar_url, prefix, sidecar_paths)
