"""What the proxy tells us about the original request, believed only from trusted peers.

``original_request`` turns the headers of a forward-auth call into the method, scheme, host
and path of the request the user made; ``page_origin`` does the same for the sidecar's own
pages, which the proxy forwards as they are.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from sidecar.errors import BadForwardedRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HEADER = 8192


@dataclass(frozen=True, slots=True)
class Original:
    method: str
    scheme: str
    host: str  # lower case, with the port when it is not the default
    path: str  # raw path, without the query
    query: str

    @property
    def url(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.host}{self.path}{query}"


class TrustedProxies:
    def __init__(self, networks: tuple[Network, ...]) -> None:
        self._networks = networks
        self._check = lru_cache(maxsize=1024)(self._is_trusted)

    def trusted(self, peer: str | None) -> bool:
        return bool(peer) and self._check(peer)

    def _is_trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


def wants_html(accept: str) -> bool:
    """A browser is a request whose Accept names text/html (or text/*) with a non-zero quality.

    A bare ``*/*`` (curl, scripts, HTTP libraries) is an API client: it gets a 401 with a JSON
    body rather than a redirect to a page it cannot show.
    """
    for part in accept[:MAX_HEADER].split(","):
        media, *params = part.split(";")
        if media.strip().lower() not in ("text/html", "text/*", "application/xhtml+xml"):
            continue
        if any(p.strip().replace(" ", "").rstrip("0").rstrip(".") in ("q=", "q=0") for p in params):
            continue
        return True
    return False


def _clean_host(value: str) -> str:
    host = value.strip().lower()
    if not host or len(host) > 255 or any(c in host for c in "/\\@ \t?#") or not host.isascii():
        raise BadForwardedRequest(f"invalid host {value[:80]!r}")
    return host


def _method(value: str) -> str:
    method = value.strip().upper()
    if not method or len(method) > 16 or not method.isalpha():
        raise BadForwardedRequest(f"invalid method {value[:20]!r}")
    return method


def _from_url(url: str, method: str) -> Original:
    if len(url) > MAX_HEADER:
        raise BadForwardedRequest("X-Original-URL is too long")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadForwardedRequest("X-Original-URL must be an absolute http(s) URL")
    if "@" in parts.netloc:
        raise BadForwardedRequest("X-Original-URL must not carry user information")
    return Original(_method(method), parts.scheme, _clean_host(parts.netloc),
                    parts.path or "/", parts.query)


def _from_parts(scheme: str, host: str, uri: str, method: str) -> Original:
    scheme = scheme.strip().lower() or "http"
    if scheme not in ("http", "https"):
        raise BadForwardedRequest(f"invalid scheme {scheme[:10]!r}")
    if not uri.startswith("/") or len(uri) > MAX_HEADER:
        raise BadForwardedRequest("the original URI must be a path starting with /")
    path, _, query = uri.partition("?")
    path = path.split("#", 1)[0]
    return Original(_method(method), scheme, _clean_host(host), path, query)


def original_for_nginx(headers: dict[str, str]) -> Original:
    """nginx ``auth_request``: X-Original-URL, else X-Forwarded-Proto/Host + X-Original-URI."""
    method = headers.get("x-original-method") or headers.get("x-forwarded-method") or "GET"
    if headers.get("x-original-url"):
        return _from_url(headers["x-original-url"], method)
    host = headers.get("x-forwarded-host") or headers.get("host", "")
    uri = headers.get("x-original-uri") or headers.get("x-forwarded-uri")
    if not uri:
        raise BadForwardedRequest("neither X-Original-URL nor X-Original-URI was sent")
    return _from_parts(headers.get("x-forwarded-proto", "http"), host, uri, method)


def original_for_forward(headers: dict[str, str]) -> Original:
    """Traefik ForwardAuth / Caddy forward_auth: X-Forwarded-Method, -Proto, -Host, -Uri."""
    missing = [h for h in ("x-forwarded-method", "x-forwarded-host", "x-forwarded-uri")
               if not headers.get(h)]
    if missing:
        raise BadForwardedRequest("missing " + ", ".join(missing))
    original = _from_parts(headers.get("x-forwarded-proto", "http"), headers["x-forwarded-host"],
                           headers["x-forwarded-uri"], headers["x-forwarded-method"])
    if headers.get("x-original-url"):
        other = _from_url(headers["x-original-url"], original.method)
        if (other.host, other.path, other.query) != (original.host, original.path, original.query):
            raise BadForwardedRequest("X-Original-URL and X-Forwarded-* disagree")
    return original


def page_origin(headers: dict[str, str], trusted: bool, own_scheme: str) -> tuple[str, str]:
    """(scheme, host) of a page request, from X-Forwarded-* only when the peer is trusted."""
    scheme = own_scheme
    host = headers.get("host", "")
    if trusted:
        scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() or scheme
        host = headers.get("x-forwarded-host", "").split(",")[0].strip() or host
    if scheme not in ("http", "https"):
        scheme = "http"
    return scheme, _clean_host(host) if host else "localhost"


def safe_redirect(target: str | None, scheme: str, host: str, allowed_hosts: tuple[str, ...],
                  fallback: str = "/") -> str:
    """``target`` when it stays on this host or an allowed one (http/https only), else ``fallback``.

    Relative targets must be a single-slash path. Absolute targets are parsed and their host
    compared exactly, or as a dot-bounded suffix of an allowed ``.example.com`` entry.
    """
    if not target or len(target) > 2048:
        return fallback
    if any(ord(c) < 0x21 or c == "\\" or ord(c) == 0x7F for c in target) or not target.isascii():
        return fallback
    if target.startswith("/"):
        if target.startswith("//"):
            return fallback
        return target
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError:
        return fallback
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return fallback
    target_host = parts.hostname.lower().rstrip(".")
    if port is not None:
        target_host = f"{target_host}:{port}"
    if target_host == host.lower() or _allowed(parts.hostname.lower().rstrip("."), allowed_hosts):
        if parts.scheme == "http" and scheme == "https" and target_host == host.lower():
            return fallback  # never downgrade to plain http
        return target
    return fallback


def _allowed(hostname: str, allowed_hosts: tuple[str, ...]) -> bool:
    for entry in allowed_hosts:
        if entry.startswith("."):
            if hostname == entry[1:] or hostname.endswith(entry):
                return True
        elif hostname == entry:
            return True
    return False
