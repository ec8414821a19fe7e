"""The one door: the only place that reads identity-bearing parts of a request.

Every decision (the forward-auth endpoints, the pages, the password-reset gate) starts from
one ``Reading`` of the request made here: the Cookie lines, ``Authorization``, the identity
headers of the header resolver, the forwarded headers and the client address. The rule is to
read a request the way the proxy and *any* app behind it would, and where real apps could
disagree, to refuse rather than guess:

* all ``Cookie`` lines are joined, as RFC 6265 intermediaries, HTTP/2 and most frameworks do;
* a cookie that matters (a session cookie of the app, or one of the sidecar's own) given
  twice, under a name with stray whitespace or bytes outside the RFC 6265 token set, or under
  a name that a framework would fold into it (case, PHP's ``.``/space → ``_``) is ambiguous;
* an identity, forwarded or ``Authorization`` header given twice (``Remote-User`` and
  ``Remote_User`` count as the same, as WSGI makes them), with invalid UTF-8, or an identity
  value that lists several (``admin, alice``) is ambiguous.

An ambiguous reading is never allowed: the caller answers 401 ``ambiguous_request`` (400 to
the proxy for its own forwarded headers) and logs why.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.errors import Ambiguous, BadForwardedRequest

# RFC 7230 tchar: what a cookie or header name may be made of.
TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# RFC 6265 cookie-octet: what a cookie value that matters may be made of (no space, DQUOTE,
# comma, semicolon, backslash or control byte: parsers split, unquote or trim on those).
_COOKIE_VALUE = re.compile(r'[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*')
# RFC 6265 allows a value in double quotes; Python (SimpleCookie, Tornado, Jupyter) writes one
# for values with "=" or ":". With plain cookie-octets inside, every parser reads the inside.
_QUOTED = re.compile(r'"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"')
_PLAIN_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SPLITTERS = re.compile(r"[\s,]")  # where SimpleCookie-like parsers may start another pair
_FRAGMENTS = re.compile(r"[\s,]+")
MAX_COOKIE_HEADER = 16 * 1024
FORWARDED_HEADERS = frozenset({
    "host", "x-original-url", "x-original-uri", "x-original-method", "x-forwarded-method",
    "x-forwarded-proto", "x-forwarded-host", "x-forwarded-uri", "x-forwarded-port",
    "x-forwarded-prefix", "forwarded",
})
ALWAYS_SINGLE = frozenset({"authorization", "accept", "x-request-id", "user-agent"})
#: The password-reset gate's own cookies (fixed names; the 2FA and device cookies are configured).
RESET_NONCE_COOKIE = "totp_sidecar_reset"
RESET_GRANT_COOKIE = "totp_sidecar_reset_grant"
RESET_COOKIES = (RESET_NONCE_COOKIE, RESET_GRANT_COOKIE)
#: Binds set-up to a browser when the app session has no cookie (an authenticator that sets none).
ENROLL_COOKIE = "totp_sidecar_enroll"
#: Where the headers of a request are kept in its ASGI scope once read (see ``Door.read``).
READ_HEADERS = "totp_sidecar.headers"
#: Carries new recovery codes (sealed) from the POST that made them to the page that shows them.
CODES_COOKIE = "totp_sidecar_codes"
#: Methods that never log anyone in: any other may give the app session to another user.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@functools.lru_cache(maxsize=4096)
def fold_cookie_name(name: str) -> str:
    """The name as the most lenient framework would key it: PHP's ``.``/space/``[`` → ``_``,
    anything else outside the token set dropped (Python's ``strip`` trims NBSP, U+3000 and
    0x1C–0x1F; other parsers trim less), any case; read as latin-1 and as UTF-8 alike."""
    if _PLAIN_NAME.fullmatch(name):
        return name.replace(".", "_").lower()
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        name = name.encode("latin-1").decode("utf-8")
    name = name.strip()
    for char in ". [":
        name = name.replace(char, "_")
    return "".join(c for c in name if c in TOKEN).lower()


def fold_header_name(name: str) -> str:
    """Header names as WSGI/CGI servers key them: ``Remote_User`` is ``Remote-User``."""
    return name.strip().lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class CookieReading:
    """The cookies of a request: every pair in order, and the unambiguous name → value map."""

    header: str  # every Cookie line, joined with "; " (what the app receives, in one line)
    pairs: tuple[tuple[str, str], ...]  # (name, value) as sent, separators trimmed
    values: Mapping[str, str] = field(default_factory=dict)  # name → value (first; see problem)
    problem: str = ""  # why the cookies that matter are ambiguous ("" = they are not)


def read_cookies(lines: Iterable[str], watched: frozenset[str] | None) -> CookieReading:
    """Read every Cookie line; ``watched`` are the names that matter (None: every name).

    A pair whose name differs from its token-only form, a duplicate, a value holding bytes
    outside RFC 6265's cookie-octets, or a pair that ends a Cookie line other than the last
    (WSGI servers join lines with "," and glue the next line onto its value) is a problem when
    its folded name is watched; so is any value in which a space- or comma-splitting parser
    (``SimpleCookie``) would find a watched cookie.
    """
    lines = [line for line in lines if line.strip()]
    header = "; ".join(lines)
    line_ends = _line_ends(lines)
    pairs: list[tuple[str, str]] = []
    values: dict[str, str] = {}
    seen: dict[str, str] = {}
    watched_folded = None if watched is None else {fold_cookie_name(n) for n in watched}
    problem = ""
    if len(header) > MAX_COOKIE_HEADER:
        return CookieReading(header, (), {}, "the Cookie header is too long")
    offset = 0
    for raw_chunk in header.split(";"):
        end = offset + len(raw_chunk)
        offset = end + 1
        chunk = raw_chunk.lstrip(" \t")
        if not chunk:
            continue
        name, sep, value = chunk.partition("=")
        if not sep:
            name, value = "", chunk
        folded = fold_cookie_name(name)
        matters = bool(folded) and (watched_folded is None or folded in watched_folded)
        value = value.strip(" \t")
        pairs.append((name, value))
        if not problem and _hides_watched(value, watched_folded):
            problem = f"cookie {name[:40]!r} holds what some parsers read as another cookie"
        if not matters:
            if name and sep and name not in values and _plain_name(name):
                values[name] = value
            continue
        if _QUOTED.fullmatch(value):  # "..." of plain cookie-octets: every parser unquotes it alike
            value = value[1:-1]
        if not problem:
            if not _plain_name(name):
                problem = f"cookie name {name[:40]!r} has stray whitespace or bytes"
            elif watched is not None and name not in watched:
                problem = f"cookie name {name[:40]!r} is read as another cookie by some apps"
            elif folded in seen:
                problem = f"cookie {name[:40]!r} is given twice (also as {seen[folded][:40]!r})"
            elif not _COOKIE_VALUE.fullmatch(value):
                problem = f"cookie {name[:40]!r} has a value with bytes parsers read differently"
            elif end in line_ends:
                problem = f"cookie {name[:40]!r} ends a Cookie line that another line follows"
        seen.setdefault(folded, name)
        values.setdefault(name, value)
    return CookieReading(header, tuple(pairs), values, problem)


def _plain_name(name: str) -> bool:
    return _PLAIN_NAME.fullmatch(name) is not None


def _line_ends(lines: list[str]) -> set[int]:
    """Offsets in the joined header where a Cookie line other than the last one ends."""
    ends: set[int] = set()
    offset = 0
    for line in lines[:-1]:
        offset += len(line)
        ends.add(offset)
        offset += 2  # the "; " that joins it to the next line
    return ends


def _hides_watched(value: str, watched: set[str] | None) -> bool:
    """Whether a parser splitting on spaces and commas would find a watched cookie in ``value``."""
    if not _SPLITTERS.search(value):
        return False
    for fragment in _FRAGMENTS.split(value)[1:]:
        name, sep, _ = fragment.partition("=")
        if sep and fold_cookie_name(name) and (watched is None or fold_cookie_name(name) in watched):
            return True
    return False


class Headers:
    """A request's headers: every line kept, single values handed out only when unambiguous."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._lines: dict[str, list[bytes]] = {}
        self._folded: dict[str, list[bytes]] = {}  # every line under any WSGI spelling of a name
        for name, value in raw:
            key = name.decode("latin-1").lower()
            self._lines.setdefault(key, []).append(value)
            folded = key if "_" not in key and key == key.strip() else fold_header_name(key)
            self._folded.setdefault(folded, []).append(value)

    def lines(self, name: str) -> list[bytes]:
        return self._lines.get(name.lower(), [])

    def text(self, name: str) -> str:
        """The first line as latin-1 text ("" when absent), for headers no decision rests on."""
        found = self.lines(name)
        return found[0].decode("latin-1") if found else ""

    def single(self, name: str, utf8: bool = False) -> str:
        """The one value of ``name``; Ambiguous when it is repeated (under any WSGI spelling)."""
        found = self._folded.get(name) or self._folded.get(fold_header_name(name)) or []
        if len(found) > 1:
            raise Ambiguous(f"header {name} is given {len(found)} times")
        if not found:
            return ""
        if utf8:
            try:
                return found[0].decode("utf-8")
            except UnicodeDecodeError:
                raise Ambiguous(f"header {name} is not valid UTF-8") from None
        return found[0].decode("latin-1")

    def joined(self, name: str, separator: str) -> str:
        return separator.join(v.decode("latin-1") for v in self.lines(name))

    def forwarded(self) -> dict[str, str]:
        """The forwarded headers a proxy sets, one value each; BadForwardedRequest on a repeat."""
        out: dict[str, str] = {}
        for name in FORWARDED_HEADERS & self._folded.keys():  # the names are in folded form
            found = self._folded[name]
            if len(found) > 1:
                raise BadForwardedRequest(f"header {name} is given {len(found)} times")
            if found[0]:
                out[name] = found[0].decode("latin-1")
        return out


def scope_lines(scope: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
    return list(scope.get("headers", []))


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything a decision may know about a request, read once (see the module docstring)."""

    peer: str  # the address that connected to the sidecar
    trusted: bool  # the peer is one of server.trusted_proxies
    headers: Headers
    cookies: CookieReading
    authorization: str  # the Authorization header ("" when absent)
    session_key: str  # the app's session cookies, "name=value" lines: what a 2FA cookie binds to
    kind: str  # session | basic | bearer: what identifies the request to the app
    client: str  # the user's address (the trusted proxy's last X-Forwarded-For hop)
    accept: str
    problem: str = ""  # why the request is ambiguous ("" = it is not)
    identity: tuple[str, str, str, str] = ("", "", "", "")  # header resolver: user, email, name, groups

    def cookie(self, name: str) -> str:
        return self.cookies.values.get(name, "")

    @property
    def has_credential(self) -> bool:
        return bool(self.session_key or self.authorization)


@dataclass(frozen=True, slots=True)
class Door:
    """How this sidecar reads requests: which cookies and headers matter, whom to believe."""

    own_cookies: tuple[str, ...]
    session_cookies: tuple[str, ...]  # () = every cookie but the sidecar's own is the session
    identity_headers: tuple[str, str, str, str] | None  # header resolver: user, email, name, groups
    is_trusted: Any  # Callable[[str], bool]: whether a peer address is a trusted proxy

    @property
    def watched(self) -> frozenset[str] | None:
        if not self.session_cookies:
            return None
        return frozenset(self.session_cookies) | frozenset(self.own_cookies)

    def read(self, scope: Mapping[str, Any]) -> Reading:
        """The one reading of a request (ASGI scope); ambiguity is reported, never raised.

        Headers already read to choose the request's app (``READ_HEADERS`` in the scope,
        ``sidecar.wiring.Apps.for_request``) are taken as they are, not read again."""
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        trusted = bool(peer) and bool(self.is_trusted(peer))
        headers = scope.get(READ_HEADERS) or Headers(scope.get("headers", []))
        cookie_lines = [v.decode("latin-1") for v in headers.lines("cookie")]
        cookies = read_cookies(cookie_lines, self.watched)
        problem = cookies.problem
        authorization = identity = None
        try:
            authorization = headers.single("authorization")
            if self.identity_headers is not None and trusted:
                identity = self._identity(headers, self.identity_headers)
        except Ambiguous as exc:
            problem = problem or exc.reason
        session_key = self._session_key(cookies)
        kind = credential_kind(authorization or "") if not session_key and authorization else "session"
        return Reading(peer, trusted, headers, cookies, authorization or "", session_key, kind,
                       _client_address(headers, peer, trusted), headers.text("accept"), problem,
                       identity or ("", "", "", ""))

    def _session_key(self, cookies: CookieReading) -> str:
        if self.session_cookies:
            named = [(n, cookies.values.get(n, "")) for n in self.session_cookies]
        else:
            named = sorted((n, v) for n, v in cookies.values.items() if n not in self.own_cookies)
        return "\n".join(f"{n}={v}" for n, v in named if v)

    @staticmethod
    def _identity(headers: Headers, names: tuple[str, str, str, str]) -> tuple[str, str, str, str]:
        user = read_identity_user(headers, names[0])
        email, name, groups = (headers.single(n, utf8=True) for n in names[1:])
        return user, email, name, groups


def read_identity_user(headers: Headers, name: str) -> str:
    """The user an identity header names: once, valid UTF-8, one user (Node and some proxies
    join two ``Remote-User`` lines into ``admin, alice``)."""
    user = headers.single(name, utf8=True)
    if "," in user:
        raise Ambiguous(f"header {name} names several users")
    return user


def credential_kind(authorization: str) -> str:
    """basic | bearer by the Authorization scheme; anything else needs a session's 2FA cookie."""
    scheme = authorization.split(" ", 1)[0].lower()
    return scheme if scheme in ("basic", "bearer") else "session"


def _client_address(headers: Headers, peer: str, trusted: bool) -> str:
    """The user's address: the trusted proxy's last X-Forwarded-For hop, else the peer."""
    forwarded = headers.joined("x-forwarded-for", ",")
    if forwarded and trusted:
        return forwarded.split(",")[-1].strip()[:64] or peer
    return peer
