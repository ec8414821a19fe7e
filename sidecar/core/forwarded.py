"""What the proxy tells us about the original request, believed only from trusted peers.

``original_request`` turns the headers of a forward-auth call into the method, scheme, host
and path of the request the user made; ``page_origin`` does the same for the sidecar's own
pages, which the proxy forwards as they are.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from sidecar.errors import BadForwardedRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HEADER = 8192
MAX_HOST = 260  # 253 for the name, 6 for the port
DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_PORT = re.compile(r"[0-9]{1,5}")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")  # C0 controls and DEL


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


def parse_host(value: str) -> tuple[str, int | None]:
    """``(hostname, port)`` of a ``host[:port]`` value, in lower case and without a trailing dot.

    The host name is a DNS name (letters, digits, ``-``, ``_``, dot-separated non-empty
    labels), a dotted-quad IPv4 address (a name whose last label is numeric must be one), or
    an IPv6 address in brackets (compressed; no zone). The port, when given, is 1 to 5 digits
    in 1..65535. Anything else raises ValueError.
    """
    if not value.isascii() or len(value) > MAX_HOST:
        raise ValueError("not an ASCII host of at most 260 characters")
    value = value.lower()
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or "%" in inside:
            raise ValueError("not a bracketed IPv6 address")
        hostname = f"[{ipaddress.IPv6Address(inside).compressed}]"
        if rest and not rest.startswith(":"):
            raise ValueError("only a :port may follow the IPv6 address")
        port_text = rest[1:] if rest else None
    else:
        name, colon, port = value.partition(":")
        hostname = _host_name(name)
        port_text = port if colon else None
    if port_text is None:
        return hostname, None
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError("the port must be a number in 1..65535")
    return hostname, int(port_text)


def _host_name(name: str) -> str:
    """A DNS name or an IPv4 address, without its trailing dot (see ``parse_host``)."""
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("not a DNS name")
    if labels[-1].isdigit():
        ipaddress.IPv4Address(name)  # 1.2.3.999, 1.2.3, 01.2.3.4 are no addresses
    return name


def host_text(hostname: str, port: int | None, scheme: str) -> str:
    """``hostname[:port]``, without the port when it is the scheme's default."""
    return hostname if port is None or port == DEFAULT_PORTS[scheme] else f"{hostname}:{port}"


def _clean_host(value: str, scheme: str) -> str:
    """A Host-like value in canonical form (see ``parse_host``, ``host_text``).

    Raises BadForwardedRequest when it is malformed.
    """
    if len(value) <= MAX_HOST:  # the few hosts of an app, every request: kept (bounded)
        return _clean_short_host(value, scheme)
    return _parse_clean_host(value, scheme)


@lru_cache(maxsize=256)
def _clean_short_host(value: str, scheme: str) -> str:
    return _parse_clean_host(value, scheme)


def _parse_clean_host(value: str, scheme: str) -> str:
    try:
        hostname, port = parse_host(value.strip(" \t"))
    except ValueError:
        raise BadForwardedRequest(f"invalid host {value[:80]!r}") from None
    return host_text(hostname, port, scheme)


def _method(value: str) -> str:
    method = value.strip().upper()
    if not method or len(method) > 16 or not method.isalpha():
        raise BadForwardedRequest(f"invalid method {value[:20]!r}")
    return method


def _from_url(url: str, method: str) -> Original:
    if len(url) > MAX_HEADER:
        raise BadForwardedRequest("X-Original-URL is too long")
    url = url.strip()
    if CONTROL_CHARACTERS.search(url):  # urlsplit would drop tabs and newlines
        raise BadForwardedRequest("X-Original-URL holds control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ in the host
        raise BadForwardedRequest("X-Original-URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadForwardedRequest("X-Original-URL must be an absolute http(s) URL")
    if "@" in parts.netloc:
        raise BadForwardedRequest("X-Original-URL must not carry user information")
    return Original(_method(method), parts.scheme, _clean_host(parts.netloc, parts.scheme),
                    parts.path or "/", parts.query)


def _from_parts(scheme: str, host: str, uri: str, method: str) -> Original:
    scheme = scheme.strip().lower() or "http"
    if scheme not in ("http", "https"):
        raise BadForwardedRequest(f"invalid scheme {scheme[:10]!r}")
    if not uri.startswith("/") or len(uri) > MAX_HEADER:
        raise BadForwardedRequest("the original URI must be a path starting with /")
    path, _, query = uri.partition("?")
    path = path.split("#", 1)[0]
    return Original(_method(method), scheme, _clean_host(host, scheme), path, query)


def original_for_nginx(headers: dict[str, str]) -> Original:
    """nginx ``auth_request``: X-Original-URL, else X-Forwarded-Proto/Host + X-Original-URI."""
    method = headers.get("x-original-method") or headers.get("x-forwarded-method")
    if not method:  # a POST read as a GET would skip the rules and the login marks for POSTs
        raise BadForwardedRequest("neither X-Original-Method nor X-Forwarded-Method was sent")
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
    """(scheme, host) of a page request, from X-Forwarded-* only when the peer is trusted.

    The host is canonical (see ``_clean_host``); a malformed one raises BadForwardedRequest.
    """
    scheme = own_scheme
    host = headers.get("host", "")
    if trusted:
        scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() or scheme
        host = headers.get("x-forwarded-host", "").split(",")[0].strip() or host
    if scheme not in ("http", "https"):
        scheme = "http"
    return scheme, _clean_host(host, scheme) if host else "localhost"


def safe_redirect(target: str | None, scheme: str, host: str, allowed_hosts: tuple[str, ...],
                  fallback: str = "/") -> str:
    """``target`` when it stays on this origin or goes to an allowed one, else ``fallback``.

    Relative targets must be a single-slash path. An absolute target must be http(s) without
    user information, and either on the page's own host and port (``host``, canonical as from
    ``page_origin``) in the page's ``scheme`` (or upgraded from http to https), or allowed by
    an entry of ``allowed_hosts`` (canonical as from ``redirect_entry``): a bare host or
    ``.domain`` allows https on the default port only, an origin exactly its scheme, host and port.
    """
    if not target or len(target) > 2048:
        return fallback
    if any(ord(c) < 0x21 or c == "\\" or ord(c) == 0x7F for c in target) or not target.isascii():
        return fallback
    if target.startswith("/"):
        return fallback if target.startswith("//") else target
    origin = _origin_of(target)
    if origin is None:
        return fallback
    if _same_host(origin, scheme, host) or any(_entry_allows(e, origin) for e in allowed_hosts):
        return target
    return fallback


Origin = tuple[str, str, int | None]  # scheme, hostname, port (None: not given)


def _origin_of(url: str) -> Origin | None:
    """The scheme, host name and port of an absolute http(s) URL without user information."""
    try:
        parts = urlsplit(url)
        hostname, port = parse_host(parts.netloc)
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or "@" in parts.netloc:
        return None
    return parts.scheme, hostname, port


def _same_host(origin: Origin, scheme: str, host: str) -> bool:
    """Same host and port as the page, in its scheme or upgraded from http to https."""
    target_scheme, hostname, port = origin
    if target_scheme != scheme and (scheme, target_scheme) != ("http", "https"):
        return False
    try:
        page = parse_host(host)
    except ValueError:
        return False
    return host_text(hostname, port, target_scheme) == host_text(*page, scheme)


def _entry_allows(entry: str, origin: Origin) -> bool:
    """Whether one (canonical) ``redirects.allowed_hosts`` entry allows ``origin``."""
    scheme, hostname, port = origin
    if "://" in entry:
        return f"{scheme}://{host_text(hostname, port, scheme)}" == entry
    if scheme != "https" or port not in (None, DEFAULT_PORTS["https"]):
        return False
    if entry.startswith("."):
        return hostname == entry[1:] or hostname.endswith(entry)
    return hostname == entry


def redirect_entry(entry: str) -> str:
    """The canonical form of a ``redirects.allowed_hosts`` entry; ValueError when it is none.

    ``host`` (one host), ``.domain`` (the domain and its subdomains; a DNS name), each for
    https on the default port, or an origin ``http(s)://host[:port]`` (exactly that; without
    a port, the scheme's default). Letter case does not matter.
    """
    entry = entry.lower()
    if "://" in entry:
        try:
            parts = urlsplit(entry)
            hostname, port = parse_host(parts.netloc)
        except ValueError:
            raise ValueError(f"{entry!r} is not an origin such as https://host:8443") from None
        if parts.scheme not in DEFAULT_PORTS or "@" in parts.netloc or entry != (
                f"{parts.scheme}://{parts.netloc}"):
            raise ValueError(f"{entry!r} is not an origin such as https://host:8443 (http or https,"
                             " no path)")
        return f"{parts.scheme}://{host_text(hostname, port, parts.scheme)}"
    try:
        hostname, port = parse_host(entry[1:] if entry.startswith(".") else entry)
    except ValueError:
        raise ValueError(f"{entry!r} is not a host name, .domain or origin") from None
    if port is not None:
        raise ValueError(f"{entry!r}: give a port as an origin, such as https://{entry}")
    if entry.startswith("."):
        if hostname.startswith("[") or hostname.replace(".", "").isdigit():
            raise ValueError(f"{entry!r}: a .domain entry needs a DNS name")
        return "." + hostname
    return hostname
