"""Traefik's ForwardAuth protocol, emulated from the files in deploy/traefik.

No Traefik binary can be installed where the tests run, so this module stands in for Traefik
v3. It reads ``deploy/traefik/traefik.yml`` (the entrypoint and its ``forwardedHeaders``) and
``deploy/traefik/dynamic.yml`` (routers, the ``forwardAuth`` middleware, services), with the
ports replaced by the test's, and follows what Traefik's code does (pkg/middlewares/
forwardedheaders and pkg/middlewares/auth/forward.go; docs: "ForwardAuth",
https://doc.traefik.io/traefik/v3.3/reference/routing-configuration/http/middlewares/forwardauth):

* **Entrypoint.** From a peer outside ``forwardedHeaders.trustedIPs`` (and without ``insecure``)
  every X-Forwarded-Proto, -For, -Host, -Port, -Server, -Uri, -Method, -Tls-Client-Cert(-Info)
  and X-Real-Ip is removed. Then X-Real-Ip, X-Forwarded-Proto, -Port and -Host (from Host) are
  set when empty, repeated X-Forwarded-For lines are joined, X-Forwarded-Server is set.
* **Routers.** The matching router with the highest priority (explicit, else the length of its
  rule); rules made of ``Host``, ``Path``, ``PathPrefix``, ``&&``, ``||``, ``!``, parentheses.
* **forwardAuth.** A ``GET`` to ``address`` without a body, with the request's headers minus
  the hop-by-hop ones (``Connection`` and the names it lists, Keep-Alive, TE, Trailer(s),
  Transfer-Encoding, Upgrade; Go never writes Host or Content-Length from the map), kept to
  ``authRequestHeaders`` when that is set, then: ``X-Forwarded-For`` = the peer's address
  (after the incoming list with ``trustForwardHeader``); ``X-Forwarded-Method``, ``-Proto``,
  ``-Host``, ``-Uri`` = the incoming values with ``trustForwardHeader`` when present, else the
  request's own method, scheme, Host and request URI; ``X-Forwarded-Port`` as it came in. Go's
  client adds ``User-Agent: Go-http-client/1.1`` and ``Accept-Encoding: gzip`` when absent.
  A non-2xx answer goes to the client as it is (status, headers minus hop-by-hop, body), its
  ``Location`` resolved against ``address`` unless ``preserveLocationHeader``; a failed call
  is an empty ``500``. On 2xx, each ``authResponseHeaders`` name is first DELETED from the
  request and then set to the answer's values, if it has any: a client-sent ``Remote-User``
  never reaches the app, even when the answer carries none. The deletion is by exact name, so
  a client's ``Remote_User`` passes untouched, as in Traefik. When the answer sets cookies,
  the app's ``Set-Cookie`` of the names in ``addAuthCookiesToResponse`` are replaced by the
  answer's cookies of those names.
* **Services.** A reverse proxy: Host passed as it is, hop-by-hop headers dropped, the peer
  appended to X-Forwarded-For; ``502`` when the server cannot be reached.

Not emulated (and refused when configured): authResponseHeadersRegex, forwardBody,
preserveRequestMethod, TLS. Bodies are buffered, and cookies keep their original text where
Traefik re-serializes them; neither matters to the sidecar.

Run: ``python -m tests.e2e.traefik_emulator --port-map 8080:18080 --port-map 9091:19091 ...``.
"""

from __future__ import annotations

import argparse
import gzip
import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import yaml

logger = logging.getLogger("traefik_emulator")

ROOT = Path(__file__).resolve().parents[2]
DYNAMIC = ROOT / "deploy" / "traefik" / "dynamic.yml"
STATIC = ROOT / "deploy" / "traefik" / "traefik.yml"

Headers = list[tuple[str, str]]  # lower-case names, in order, repeats kept
Matcher = Callable[[str, str], bool]  # (host without port, path) -> matches
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What the entrypoint removes from untrusted peers (forwardedheaders.xHeaders).
X_HEADERS = ("x-forwarded-proto", "x-forwarded-for", "x-forwarded-host", "x-forwarded-port",
             "x-forwarded-server", "x-forwarded-uri", "x-forwarded-method",
             "x-forwarded-tls-client-cert", "x-forwarded-tls-client-cert-info", "x-real-ip")
#: forward.go's hopHeaders (oxy names: note "Trailers"), plus what Go's request writer never
#: takes from the header map (Host, Content-Length, Transfer-Encoding, Trailer).
AUTH_DROPPED = frozenset({"connection", "keep-alive", "te", "trailers", "transfer-encoding",
                          "upgrade", "host", "content-length", "trailer"})
#: forward.go's hopHeaders, removed from a non-2xx answer before it goes to the client.
AUTH_ANSWER_DROPPED = frozenset({"connection", "keep-alive", "te", "trailers",
                                 "transfer-encoding", "upgrade"})
#: net/http/httputil.ReverseProxy's hop-by-hop headers (request and response).
PROXY_HOP = frozenset({"connection", "proxy-connection", "keep-alive", "proxy-authenticate",
                       "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})
GO_USER_AGENT = "Go-http-client/1.1"
AUTH_TIMEOUT = 30.0  # forward.go's client timeout
SUPPORTED_FORWARD_AUTH = frozenset({"address", "trustForwardHeader", "authResponseHeaders",
                                    "authRequestHeaders", "addAuthCookiesToResponse",
                                    "preserveLocationHeader"})


# -- configuration -------------------------------------------------------------------------
@dataclass(frozen=True)
class ForwardAuth:
    address: str
    trust_forward_header: bool = False
    auth_response_headers: tuple[str, ...] = ()
    auth_request_headers: tuple[str, ...] = ()
    add_auth_cookies: frozenset[str] = frozenset()
    preserve_location_header: bool = False


@dataclass(frozen=True)
class Router:
    name: str
    rule: str
    matches: Matcher
    priority: int
    middlewares: tuple[str, ...]
    service: str


@dataclass(frozen=True)
class EntryPoint:
    name: str
    port: int
    trusted_ips: tuple[Network, ...] = ()
    insecure: bool = False


@dataclass(frozen=True)
class Config:
    entrypoint: EntryPoint
    routers: tuple[Router, ...]  # highest priority first
    middlewares: Mapping[str, ForwardAuth]
    services: Mapping[str, str]  # name -> server URL


def remap_port(url: str, port_map: Mapping[int, int]) -> str:
    """``url`` with a loopback port replaced as ``port_map`` says (other URLs unchanged)."""
    parts = urlsplit(url)
    hostname, port = parts.hostname or "", parts.port
    if hostname in ("127.0.0.1", "localhost", "::1") and port is not None and port in port_map:
        host = f"[{hostname}]" if ":" in hostname else hostname
        return urlunsplit((parts.scheme, f"{host}:{port_map[port]}", parts.path, parts.query,
                           parts.fragment))
    return url


def _refuse_unknown(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: {', '.join(unknown)} not emulated by {__name__}")


def load_config(dynamic: Path = DYNAMIC, static: Path = STATIC, entrypoint: str = "web",
                port_map: Mapping[int, int] | None = None) -> Config:
    port_map = port_map or {}
    static_data = yaml.safe_load(static.read_text())
    ep = static_data["entryPoints"][entrypoint]
    port = int(str(ep["address"]).rsplit(":", 1)[1])
    forwarded = ep.get("forwardedHeaders") or {}
    _refuse_unknown(forwarded, ("trustedIPs", "insecure"), f"{static}: forwardedHeaders")
    entry = EntryPoint(entrypoint, port_map.get(port, port),
                       tuple(ipaddress.ip_network(n, strict=False)
                             for n in forwarded.get("trustedIPs", ())),
                       bool(forwarded.get("insecure", False)))

    http = yaml.safe_load(dynamic.read_text())["http"]
    middlewares: dict[str, ForwardAuth] = {}
    for name, spec in http.get("middlewares", {}).items():
        _refuse_unknown(spec, ("forwardAuth",), f"{dynamic}: middleware {name}")
        fa = spec["forwardAuth"]
        _refuse_unknown(fa, SUPPORTED_FORWARD_AUTH, f"{dynamic}: {name}.forwardAuth")
        middlewares[name] = ForwardAuth(
            address=remap_port(fa["address"], port_map),
            trust_forward_header=bool(fa.get("trustForwardHeader", False)),
            auth_response_headers=tuple(fa.get("authResponseHeaders", ())),
            auth_request_headers=tuple(fa.get("authRequestHeaders", ())),
            add_auth_cookies=frozenset(fa.get("addAuthCookiesToResponse", ())),
            preserve_location_header=bool(fa.get("preserveLocationHeader", False)))
    services: dict[str, str] = {}
    for name, spec in http.get("services", {}).items():
        servers = spec["loadBalancer"]["servers"]
        if len(servers) != 1:
            raise ValueError(f"{dynamic}: service {name}: one server only in {__name__}")
        services[name] = remap_port(servers[0]["url"], port_map).rstrip("/")
    routers: list[Router] = []
    for name, spec in http.get("routers", {}).items():
        if entrypoint not in spec.get("entryPoints", [entrypoint]):
            continue
        rule = spec["rule"]
        for mw in spec.get("middlewares", ()):
            if mw not in middlewares:
                raise ValueError(f"{dynamic}: router {name}: unknown middleware {mw}")
        if spec["service"] not in services:
            raise ValueError(f"{dynamic}: router {name}: unknown service {spec['service']}")
        routers.append(Router(name, rule, parse_rule(rule), int(spec.get("priority", len(rule))),
                              tuple(spec.get("middlewares", ())), spec["service"]))
    routers.sort(key=lambda r: r.priority, reverse=True)
    return Config(entry, tuple(routers), middlewares, services)


# -- router rules --------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<fn>Host|PathPrefix|Path)\(`(?P<arg>[^`]*)`\)|(?P<op>&&|\|\||!|\(|\)))")


def parse_rule(rule: str) -> Matcher:
    """A matcher for a Traefik v3 rule made of Host, Path, PathPrefix, &&, ||, ! and ()."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(rule.rstrip()):
        m = _TOKEN.match(rule, pos)
        if m is None:
            raise ValueError(f"rule {rule!r}: cannot read at {rule[pos:]!r}")
        tokens.append((m["fn"], m["arg"]) if m["fn"] else ("op", m["op"]))
        pos = m.end()
    matcher, rest = _or(tokens)
    if rest:
        raise ValueError(f"rule {rule!r}: unexpected {rest[0][1]!r}")
    return matcher


def _or(tokens: list[tuple[str, str]]) -> tuple[Matcher, list[tuple[str, str]]]:
    left, tokens = _and(tokens)
    while tokens and tokens[0] == ("op", "||"):
        right, tokens = _and(tokens[1:])
        left = (lambda a, b: lambda h, p: a(h, p) or b(h, p))(left, right)
    return left, tokens


def _and(tokens: list[tuple[str, str]]) -> tuple[Matcher, list[tuple[str, str]]]:
    left, tokens = _unary(tokens)
    while tokens and tokens[0] == ("op", "&&"):
        right, tokens = _unary(tokens[1:])
        left = (lambda a, b: lambda h, p: a(h, p) and b(h, p))(left, right)
    return left, tokens


def _unary(tokens: list[tuple[str, str]]) -> tuple[Matcher, list[tuple[str, str]]]:
    if not tokens:
        raise ValueError("rule ends too early")
    kind, arg = tokens[0]
    if (kind, arg) == ("op", "!"):
        inner, rest = _unary(tokens[1:])
        return (lambda h, p: not inner(h, p)), rest
    if (kind, arg) == ("op", "("):
        inner, rest = _or(tokens[1:])
        if not rest or rest[0] != ("op", ")"):
            raise ValueError("missing )")
        return inner, rest[1:]
    if kind == "Host":
        want = arg.lower()
        return (lambda h, p: h == want), tokens[1:]
    if kind == "Path":
        return (lambda h, p: p == arg), tokens[1:]
    if kind == "PathPrefix":
        return (lambda h, p: p.startswith(arg)), tokens[1:]
    raise ValueError(f"unexpected {arg!r}")


def route(config: Config, host: str, path: str) -> Router | None:
    bare = host.lower()
    bare = bare[1:bare.index("]")] if bare.startswith("[") else bare.rsplit(":", 1)[0]
    return next((r for r in config.routers if r.matches(bare, path)), None)


# -- header rules (pure functions, tested directly) -----------------------------------------
def _get(headers: Headers, name: str) -> str:
    return next((v for n, v in headers if n == name), "")


def _without(headers: Headers, names: Iterable[str]) -> Headers:
    drop = set(names)
    return [(n, v) for n, v in headers if n not in drop]


def _set(headers: Headers, name: str, value: str) -> Headers:
    return [*_without(headers, [name]), (name, value)]


def _connection_listed(headers: Headers) -> set[str]:
    return {t.strip().lower() for n, v in headers if n == "connection" for t in v.split(",")
            if t.strip()}


def _trusted(peer: str, networks: Iterable[Network]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in n for n in networks)


def entrypoint_headers(headers: Headers, *, peer: str, host: str, entrypoint: EntryPoint,
                       hostname: str, tls: bool = False) -> Headers:
    """The request's headers after the entrypoint's forwarded-headers handling."""
    out = list(headers)
    if not entrypoint.insecure and not _trusted(peer, entrypoint.trusted_ips):
        out = _without(out, X_HEADERS)
    if not _get(out, "x-real-ip"):
        out = _set(out, "x-real-ip", peer)
    websocket = ("upgrade" in _connection_listed(out)
                 and _get(out, "upgrade").lower() == "websocket")
    if not _get(out, "x-forwarded-proto"):
        scheme = ("wss" if tls else "ws") if websocket else ("https" if tls else "http")
        out = _set(out, "x-forwarded-proto", scheme)
    if not _get(out, "x-forwarded-port"):
        _, sep, port = host.rpartition(":")
        if not (sep and port.isdigit()):
            port = "443" if tls or _get(out, "x-forwarded-proto") in ("https", "wss") else "80"
        out = _set(out, "x-forwarded-port", port)
    if not _get(out, "x-forwarded-host") and host:
        out = _set(out, "x-forwarded-host", host)
    xff = [v for n, v in out if n == "x-forwarded-for"]
    if xff:
        out = _set(out, "x-forwarded-for", ", ".join(xff))
    return _set(out, "x-forwarded-server", hostname)


def auth_request_headers(headers: Headers, *, auth: ForwardAuth, method: str, request_uri: str,
                         host: str, peer: str, tls: bool = False) -> Headers:
    """What forward.go's writeHeader sends to ``auth.address`` (plus Go's client defaults)."""
    trust = auth.trust_forward_header
    dropped = AUTH_DROPPED | _connection_listed(headers)
    out = [(n, v) for n, v in headers if n not in dropped]
    if auth.auth_request_headers:
        allowed = {h.lower() for h in auth.auth_request_headers}
        out = [(n, v) for n, v in out if n in allowed]
    xff = peer
    prior = [v for n, v in headers if n == "x-forwarded-for"]
    if trust and prior:
        xff = ", ".join(prior) + ", " + peer
    out = _set(out, "x-forwarded-for", xff)
    incoming = _get(headers, "x-forwarded-method")
    out = _set(out, "x-forwarded-method", incoming if trust and incoming else method)
    incoming = _get(headers, "x-forwarded-proto")
    out = _set(out, "x-forwarded-proto",
               incoming if trust and incoming else ("https" if tls else "http"))
    incoming = _get(headers, "x-forwarded-port")
    if trust and incoming:
        out = _set(out, "x-forwarded-port", incoming)
    incoming = _get(headers, "x-forwarded-host")
    if trust and incoming:
        out = _set(out, "x-forwarded-host", incoming)
    elif host:
        out = _set(out, "x-forwarded-host", host)
    else:
        out = _without(out, ["x-forwarded-host"])
    incoming = _get(headers, "x-forwarded-uri")
    out = _set(out, "x-forwarded-uri", incoming if trust and incoming else request_uri)
    if not _get(out, "user-agent"):
        out.append(("user-agent", GO_USER_AGENT))
    if not _get(out, "accept-encoding") and not _get(out, "range"):
        out.append(("accept-encoding", "gzip"))
    return out


def headers_for_app(headers: Headers, auth: ForwardAuth, answer: Headers) -> Headers:
    """authResponseHeaders: each name deleted from the request, then the answer's values set."""
    out = list(headers)
    for name in auth.auth_response_headers:
        key = name.lower()
        out = _without(out, [key])
        out.extend((key, v) for n, v in answer if n == key)
    return out


def cookie_name(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[0].strip()


def app_set_cookies(app_cookies: list[str], auth_cookies: list[str],
                    names: frozenset[str]) -> list[str]:
    """forward.go's buildModifier (used only when the auth answer set cookies): the app's
    cookies of other names, then the auth answer's cookies of the listed names."""
    if not auth_cookies:
        return app_cookies
    return ([c for c in app_cookies if cookie_name(c) not in names]
            + [c for c in auth_cookies if cookie_name(c) in names])


# -- the ASGI app --------------------------------------------------------------------------
def _scope_headers(scope: Mapping[str, Any]) -> Headers:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]


def _request_uri(scope: Mapping[str, Any]) -> str:
    raw = bytes(scope.get("raw_path") or str(scope["path"]).encode())
    query = bytes(scope.get("query_string", b""))
    return raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")


async def _read_body(receive: Callable[[], Any]) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send: Callable[[dict[str, Any]], Any], status: int, headers: Headers,
                body: bytes, method: str = "GET") -> None:
    out = [(n, v) for n, v in headers if n != "content-length"]
    if method != "HEAD" and status not in (204, 304):
        out.append(("content-length", str(len(body))))
    await send({"type": "http.response.start", "status": status,
                "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in out]})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


@dataclass
class TraefikEmulator:
    config: Config
    source_address: str | None = None  # the address Traefik's connections come from
    hostname: str = field(default_factory=socket.gethostname)
    _auth_client: httpx.AsyncClient | None = None
    _proxy_client: httpx.AsyncClient | None = None

    def _client(self, timeout: float | None) -> httpx.AsyncClient:
        # A jar that stores nothing (no `cookies=` on a shared client), no redirects, and no
        # httpx default headers: only what the emulated Traefik decides to send.
        transport = httpx.AsyncHTTPTransport(local_address=self.source_address)
        client = httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False,
                                   cookies=_no_cookie_jar())
        for name in ("accept", "accept-encoding", "user-agent"):
            del client.headers[name]
        return client

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._auth_client = self._client(AUTH_TIMEOUT)
                    self._proxy_client = self._client(None)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    for client in (self._auth_client, self._proxy_client):
                        if client is not None:
                            await client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert self._auth_client is not None and self._proxy_client is not None
        body = await _read_body(receive)
        peer = scope["client"][0] if scope.get("client") else ""
        raw = _scope_headers(scope)
        host = _get(raw, "host")
        tls = scope.get("scheme") == "https"
        headers = entrypoint_headers(raw, peer=peer, host=host, entrypoint=self.config.entrypoint,
                                     hostname=self.hostname, tls=tls)
        router = route(self.config, host, scope["path"])
        if router is None:
            await _send(send, 404, [("content-type", "text/plain; charset=utf-8")],
                        b"404 page not found\n")
            return
        auth_cookies: list[tuple[ForwardAuth, list[str]]] = []
        for name in router.middlewares:
            auth = self.config.middlewares[name]
            sent = auth_request_headers(headers, auth=auth, method=scope["method"],
                                        request_uri=_request_uri(scope), host=host, peer=peer,
                                        tls=tls)
            try:
                answer = await self._auth_client.get(auth.address, headers=sent)
            except httpx.HTTPError as exc:
                logger.warning("forwardAuth %s: %r", auth.address, exc)
                await _send(send, 500, [], b"")
                return
            answer_headers = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                              for k, v in answer.headers.raw]
            if not 200 <= answer.status_code < 300:
                await self._auth_answer(send, auth, answer, answer_headers, sent, scope["method"])
                return
            headers = headers_for_app(headers, auth, answer_headers)
            cookies = [v for n, v in answer_headers if n == "set-cookie"]
            if cookies:
                auth_cookies.append((auth, cookies))
        await self._proxy(send, scope, router.service, headers, body, peer, auth_cookies)

    async def _auth_answer(self, send: Any, auth: ForwardAuth, answer: httpx.Response,
                           headers: Headers, sent: Headers, method: str) -> None:
        """A non-2xx answer of the auth server, to the client as it is."""
        body = await answer.aread()
        dropped = AUTH_ANSWER_DROPPED | _connection_listed(headers)
        out = [(n, v) for n, v in headers if n not in dropped]
        if answer.headers.get("content-encoding") == "gzip" and ("accept-encoding", "gzip") in sent:
            # Go's transport asked for gzip itself, so it decompresses transparently.
            body = gzip.decompress(body)
            out = _without(out, ["content-encoding", "content-length"])
        location = _get(out, "location")
        if location and not auth.preserve_location_header:
            out = _set(out, "location", urljoin(auth.address, location))
        await _send(send, answer.status_code, out, body, method)

    async def _proxy(self, send: Any, scope: dict[str, Any], service: str, headers: Headers,
                     body: bytes, peer: str, auth_cookies: list[tuple[ForwardAuth, list[str]]]
                     ) -> None:
        assert self._proxy_client is not None
        dropped = PROXY_HOP | _connection_listed(headers) | {"content-length"}
        out = [(n, v) for n, v in headers if n not in dropped]
        prior = [v for n, v in out if n == "x-forwarded-for"]
        out = _set(out, "x-forwarded-for", ", ".join([*prior, peer]) if prior else peer)
        if body or scope["method"] in ("POST", "PUT", "PATCH"):
            out.append(("content-length", str(len(body))))
        url = self.config.services[service] + _request_uri(scope)
        request = self._proxy_client.build_request(scope["method"], url, headers=out,
                                                   content=body)
        try:
            response = await self._proxy_client.send(request, stream=True)
            try:
                payload = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            logger.warning("service %s: %r", service, exc)
            await _send(send, 502, [("content-type", "text/plain; charset=utf-8")], b"Bad Gateway")
            return
        answer = [(k.decode("latin-1").lower(), v.decode("latin-1"))
                  for k, v in response.headers.raw]
        dropped = PROXY_HOP | _connection_listed(answer)
        answer = [(n, v) for n, v in answer if n not in dropped]
        for auth, cookies in auth_cookies:
            kept = app_set_cookies([v for n, v in answer if n == "set-cookie"], cookies,
                                   auth.add_auth_cookies)
            answer = _without(answer, ["set-cookie"]) + [("set-cookie", c) for c in kept]
        await _send(send, response.status_code, answer, payload, scope["method"])


def _no_cookie_jar() -> CookieJar:
    """A jar that never keeps a cookie: a proxy must not mix its clients' cookies."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dynamic", type=Path, default=DYNAMIC)
    parser.add_argument("--static", type=Path, default=STATIC)
    parser.add_argument("--entrypoint", default="web")
    parser.add_argument("--port-map", action="append", default=[], metavar="FROM:TO",
                        help="replace a port of the config files (repeatable)")
    parser.add_argument("--source-address", default=None,
                        help="local address of the connections to the sidecar and the app")
    args = parser.parse_args(argv)
    port_map = {int(a): int(b) for a, b in (item.split(":") for item in args.port_map)}
    config = load_config(args.dynamic, args.static, args.entrypoint, port_map)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    uvicorn.run(TraefikEmulator(config, args.source_address), host="127.0.0.1",
                port=config.entrypoint.port, proxy_headers=False, server_header=False,
                date_header=False, log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
