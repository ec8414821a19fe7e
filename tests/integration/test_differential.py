"""Differential test: the sidecar's request reader against the parsers of real frameworks.

Each row of ``ROWS`` is a request's raw header lines. The sidecar reads it with
``sidecar.core.request`` (``read_cookies`` on every Cookie line, ``Headers.single`` for the
identity header ``Remote-User``); the same bytes go to Starlette (ASGI scope), Werkzeug/Flask
and Django (WSGI environ built as servers do: repeated headers joined with ``,``, ``, `` or
``; ``, ``Remote_User`` folded into ``HTTP_REMOTE_USER``), Django's ``parse_cookie``,
``http.cookies.SimpleCookie`` (Bottle, CherryPy) and Node's ``http`` module plus the ``cookie``
npm package's parse (express, over a raw socket: repeated lines really are repeated).
Whenever the sidecar does not flag a request, each framework must see, for every session
cookie name, the sidecar's value or no such cookie, and for ``Remote-User`` the sidecar's
value or nothing. Every row runs with the watched names of a typical config and with
``watched=None`` (no ``session_cookies`` configured: every cookie matters).

What the table covers:

* duplicate cookies: the session given twice (junk first or last), in another case, under
  PHP-folded names (``demo.session``, ``demo session``), twice over two Cookie lines, the
  sidecar's own ``totp_sidecar``/``totp_sidecar_device`` twice;
* odd names: space or tab before ``=``, space inside the name, a chunk without ``=``
  (also one named like the session), Unicode whitespace around a name (U+00A0 as latin-1
  and as UTF-8, U+3000, ASCII separators such as 0x1C) that Python's ``str.strip`` or
  JavaScript's ``trim`` removes;
* odd values: quoted, backslash escapes, non-ASCII bytes (latin-1 and UTF-8), a trailing
  0x1C, a quoted value that hides ``;``, a space where SimpleCookie starts a new cookie;
* odd headers: empty chunks ``;;``, a very long Cookie header, two Cookie lines (session in
  the first, the second, both);
* identity: ``Remote-User`` twice, in two cases, next to ``Remote_User``, ``Remote_User``
  alone, an empty line before a real one, ``admin, alice``, invalid UTF-8, valid UTF-8;
* normal browser requests: one session among analytics cookies, base64 padding in the
  value, the sidecar's own cookies beside the session, two Cookie lines without a repeated
  name, no cookies at all. These must never be flagged; the attack rows must always be.

The Node column needs ``node`` (tests/differential/node_parse.js): without it those tests
skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, NoReturn

import pytest
from starlette.requests import Request as StarletteRequest
from werkzeug.wrappers import Request as WerkzeugRequest

from sidecar.core.request import Headers, read_cookies, read_identity_user
from sidecar.errors import Ambiguous

NODE_SCRIPT = Path(__file__).resolve().parents[1] / "differential" / "node_parse.js"
WATCHED = frozenset({"demo_session", "totp_sidecar", "totp_sidecar_device"})
MODES: dict[str, frozenset[str] | None] = {"watched": WATCHED, "all-cookies": None}
IDENTITY = "remote-user"
#: How WSGI servers join a header given on several lines: gunicorn, werkzeug's server and
#: wsgiref use ","; Apache (mod_wsgi) merges with ", "; some put "; " between Cookie lines.
WSGI_JOINS = {"comma": ",", "comma-space": ", ", "semicolon": "; "}
LONG = "x" * (17 * 1024)


@dataclass(frozen=True)
class Row:
    id: str
    lines: tuple[bytes, ...]
    kind: str  # "attack": must be flagged; "normal": must not be; "probe": only the differential
    kind_all: str = ""  # the kind with watched=None, when it differs

    def expected(self, mode: str) -> str:
        return self.kind_all if mode == "all-cookies" and self.kind_all else self.kind


def row(id: str, kind: str, *lines: str | bytes, kind_all: str = "") -> Row:
    return Row(id, tuple(x.encode("latin-1") if isinstance(x, str) else x for x in lines), kind, kind_all)


def wire(text: str) -> bytes:
    """A framework's latin-1 text back to the bytes sent (UTF-8 for what an unquoting made)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


ROWS = [
    # -- cookies: the attacks the reader was written for ------------------------------------
    row("dup-junk-first", "attack", "Cookie: demo_session=junk; demo_session=S"),
    row("dup-junk-last", "attack", "Cookie: demo_session=S; demo_session=junk"),
    row("dup-empty-second", "attack", "Cookie: demo_session=S; demo_session="),
    row("dup-other-case", "attack", "Cookie: demo_session=S; Demo_Session=junk"),
    row("dup-upper-case-first", "attack", "Cookie: DEMO_SESSION=junk; demo_session=S"),
    row("php-dot", "attack", "Cookie: demo.session=junk; demo_session=S"),
    row("php-space", "attack", "Cookie: demo_session=S; demo session=junk"),
    row("space-before-eq", "attack", "Cookie: demo_session =S"),
    row("space-before-eq-dup", "attack", "Cookie: demo_session=junk; demo_session =S"),
    row("tab-before-eq", "attack", "Cookie: demo_session\t=S"),
    row("space-inside-name", "attack", "Cookie: demo session=S"),
    row("quoted-value", "normal", 'Cookie: demo_session="S"'),  # every parser reads S
    row("backslash-value", "attack", "Cookie: demo_session=S\\x"),
    row("quoted-backslash-escape", "attack", 'Cookie: demo_session="S\\073x"'),
    row("two-lines-session-in-both", "attack", "Cookie: demo_session=junk", "Cookie: demo_session=S"),
    row("own-cookie-twice", "attack", "Cookie: totp_sidecar=A; demo_session=S; totp_sidecar=B"),
    row("own-device-cookie-twice", "attack",
        "Cookie: totp_sidecar_device=A", "Cookie: demo_session=S; totp_sidecar_device=B"),
    row("non-ascii-latin1-value", "attack", b"Cookie: demo_session=S\xe9"),
    row("non-ascii-utf8-value", "attack", b"Cookie: demo_session=S\xc3\xa9"),
    row("very-long-header", "attack", f"Cookie: pad={LONG}; demo_session=S"),
    row("quote-hides-junk", "attack", 'Cookie: demo_session=S; x="a; demo_session=junk; b="'),
    # -- cookies: odd but not refused; only the differential decides -------------------------
    row("two-lines-session-in-first", "probe", "Cookie: demo_session=S", "Cookie: theme=dark"),
    row("two-lines-session-in-second", "probe", "Cookie: theme=dark", "Cookie: demo_session=S"),
    row("empty-chunks", "probe", "Cookie: ;;demo_session=S;; ;theme=dark;"),
    row("chunk-without-eq", "probe", "Cookie: flag; demo_session=S"),
    row("chunk-without-eq-session-name", "probe", "Cookie: demo_session; demo_session=S"),
    row("other-case-alone", "probe", "Cookie: Demo_Session=S"),
    row("quote-hides-session", "probe", 'Cookie: x="a; demo_session=S; b="'),
    row("space-splits-for-simplecookie", "probe", "Cookie: demo_session=S; theme=dark demo_session=junk"),
    row("space-in-session-value", "probe", "Cookie: demo_session=S demo_session=junk"),
    row("nbsp-latin1-after-name-last", "probe", b"Cookie: demo_session=S; demo_session\xa0=junk"),
    row("nbsp-latin1-after-name-first", "probe", b"Cookie: demo_session\xa0=junk; demo_session=S"),
    row("nbsp-utf8-after-name", "probe", b"Cookie: demo_session=S; demo_session\xc2\xa0=junk"),
    row("ideographic-space-utf8", "probe", b"Cookie: demo_session=S; \xe3\x80\x80demo_session=junk"),
    row("x1c-before-name", "probe", b"Cookie: demo_session=S; \x1cdemo_session=junk"),
    row("x1c-after-value", "probe", b"Cookie: demo_session=S\x1c"),
    row("nbsp-in-analytics-value", "probe", b"Cookie: _ga=GA\xa01; demo_session=S"),
    # -- identity header ----------------------------------------------------------------------
    row("remote-user-twice", "attack", "Remote-User: admin", "Remote-User: alice"),
    row("remote-user-two-cases", "attack", "REMOTE-USER: admin", "remote-user: alice"),
    row("remote-user-and-remote_user", "attack", "Remote-User: alice", "Remote_User: admin"),
    row("remote_user-and-remote-user", "attack", "Remote_User: admin", "Remote-User: alice"),
    row("remote-user-empty-then-value", "attack", "Remote-User:", "Remote-User: admin"),
    row("remote-user-list", "attack", "Remote-User: admin, alice", "Cookie: demo_session=S"),
    row("remote-user-invalid-utf8", "attack", b"Remote-User: \xffadmin", "Cookie: demo_session=S"),
    row("remote_user-alone", "probe", "Remote_User: admin"),
    # -- what ordinary browsers (behind a proxy that sets Remote-User) send ---------------------
    row("browser-session-among-analytics", "normal",
        "Cookie: _ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; "
        "demo_session=eyJ1c2VyIjoiYWxpY2UifQ.ZkT2Ow.s1gn-at_ure; _fbp=fb.1.1700000000000.42"),
    row("browser-base64-padding", "normal", "Cookie: demo_session=YWxpY2U6MTIzNA==; theme=dark"),
    row("browser-own-cookies", "normal",
        "Cookie: demo_session=S; totp_sidecar=eyJwIjoxfQ.sig; totp_sidecar_device=dev.sig"),
    # (no browser sends two Cookie lines to the app: HTTP/2 proxies join the crumbs with "; ";
    # with every cookie watched, a ","-joining WSGI server glues "theme" to "_ga": not "normal")
    row("browser-two-lines-no-repeat", "normal", "Cookie: demo_session=S; theme=dark", "Cookie: _ga=GA1.2.3",
        kind_all="probe"),
    row("browser-identity", "normal", "Remote-User: alice", "Cookie: demo_session=S; theme=dark"),
    row("browser-identity-utf8", "normal", b"Remote-User: jos\xc3\xa9", "Cookie: demo_session=S"),
    row("browser-no-cookies", "normal", "Accept: text/html"),
]


def header_pairs(lines: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """(name, value) as an HTTP/1.1 server hands them on: value without surrounding SP/HTAB."""
    out = []
    for line in lines:
        name, _, value = line.partition(b":")
        out.append((name, value.strip(b" \t")))
    return out


# -- the sidecar's reading ----------------------------------------------------------------------
@dataclass(frozen=True)
class SidecarReading:
    problems: tuple[str, ...]  # why the request is refused; () = it may be allowed
    header: str  # the joined Cookie header
    cookies: Mapping[bytes, bytes]  # values[name], as bytes (lines are latin-1 text)
    identity: bytes | None  # the Remote-User value, UTF-8 encoded; None when absent


def sidecar_reads(lines: Sequence[bytes], watched: frozenset[str] | None) -> SidecarReading:
    raw = [(name.lower(), value) for name, value in header_pairs(lines)]  # the ASGI scope
    headers = Headers(raw)
    reading = read_cookies([line.decode("latin-1") for line in headers.lines("cookie")], watched)
    problems = [reading.problem] if reading.problem else []
    identity = ""
    try:
        identity = read_identity_user(headers, IDENTITY)
    except Ambiguous as exc:
        problems.append(exc.reason)
    cookies = {k.encode("latin-1"): v.encode("latin-1") for k, v in reading.values.items()}
    return SidecarReading(tuple(problems), reading.header, cookies, identity.encode() or None)


# -- what the frameworks see ----------------------------------------------------------------------
@dataclass
class View:
    """A framework's reading, as bytes; a parser that raised leaves that part empty (the app
    errors instead of seeing a session, which is safe)."""

    cookies: dict[bytes, bytes] = field(default_factory=dict)
    identity: bytes | None = None
    note: str = ""


def guarded(view: View, what: str, read: Callable[[], None]) -> None:
    try:
        read()
    except Exception as exc:  # any parser failure: the app sees nothing
        view.note += f"{what} raised {type(exc).__name__}; "


def starlette_view(lines: Sequence[bytes]) -> View:
    scope = {"type": "http", "method": "GET", "path": "/", "raw_path": b"/", "query_string": b"",
             "root_path": "", "scheme": "http", "http_version": "1.1", "server": ("t", 80),
             "client": ("127.0.0.1", 1), "headers": [(n.lower(), v) for n, v in header_pairs(lines)]}
    request = StarletteRequest(scope)
    view = View()

    def cookies() -> None:
        view.cookies = {wire(k): wire(v) for k, v in request.cookies.items()}

    def identity() -> None:
        value = request.headers.get(IDENTITY)
        view.identity = value.encode("latin-1") if value is not None else None

    guarded(view, "cookies", cookies)
    guarded(view, "headers", identity)
    return view


def wsgi_environ(lines: Sequence[bytes], join: str) -> dict[str, Any]:
    """As a WSGI server builds it: HTTP_ + upper, '-' → '_' (so Remote_User folds into
    HTTP_REMOTE_USER), latin-1 text, a repeated header joined with ``join``."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
        "SERVER_NAME": "t", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(), "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for name, value in header_pairs(lines):
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]}{join}{text}" if key in environ else text
    return environ


def werkzeug_view(lines: Sequence[bytes], join: str) -> View:
    request = WerkzeugRequest(wsgi_environ(lines, join))
    view = View()

    def cookies() -> None:  # MultiDict.get: the first value of a name (Flask's request.cookies)
        view.cookies = {wire(k): wire(v) for k in request.cookies  # latin-1 text, not UTF-8
                        if (v := request.cookies.get(k)) is not None}

    def identity() -> None:
        value = request.headers.get("Remote-User")
        view.identity = value.encode("latin-1") if value is not None else None

    guarded(view, "cookies", cookies)
    guarded(view, "headers", identity)
    return view


def django_ready() -> None:
    from django.conf import settings  # type: ignore[import-untyped]

    if not settings.configured:
        settings.configure()


def django_view(lines: Sequence[bytes], join: str) -> View:
    from django.core.handlers.wsgi import WSGIRequest  # type: ignore[import-untyped]

    django_ready()
    request = WSGIRequest(wsgi_environ(lines, join))
    view = View()

    def cookies() -> None:
        view.cookies = {str(k).encode(): str(v).encode() for k, v in request.COOKIES.items()}

    def identity() -> None:
        value = request.META.get("HTTP_REMOTE_USER")
        view.identity = str(value).encode("latin-1") if value is not None else None

    guarded(view, "cookies", cookies)
    guarded(view, "headers", identity)
    return view


def django_parse_cookie_view(header: str) -> View:
    """``django.http.cookie.parse_cookie`` on the sidecar's joined header, decoded as Django does."""
    from django.http.cookie import parse_cookie  # type: ignore[import-untyped]

    view = View()

    def cookies() -> None:
        parsed = parse_cookie(header.encode("latin-1").decode(errors="replace"))
        view.cookies = {str(k).encode(): str(v).encode() for k, v in parsed.items()}

    guarded(view, "cookies", cookies)
    return view


def simplecookie_view(lines: Sequence[bytes], join: str) -> View:
    """``SimpleCookie(environ["HTTP_COOKIE"])``, as Bottle and CherryPy read cookies."""
    view = View()

    def cookies() -> None:
        jar: SimpleCookie = SimpleCookie(str(wsgi_environ(lines, join).get("HTTP_COOKIE", "")))
        view.cookies = {wire(k): wire(m.value) for k, m in jar.items()}

    guarded(view, "cookies", cookies)
    return view


def python_views(lines: Sequence[bytes], header: str) -> dict[str, View]:
    views = {"starlette": starlette_view(lines)}
    for label, join in WSGI_JOINS.items():
        views[f"werkzeug[{label}]"] = werkzeug_view(lines, join)
        views[f"django.WSGIRequest[{label}]"] = django_view(lines, join)
        views[f"SimpleCookie[{label}]"] = simplecookie_view(lines, join)
    views["django.parse_cookie"] = django_parse_cookie_view(header)
    return views


# -- the comparison -------------------------------------------------------------------------------
def disagreements(side: SidecarReading, views: Mapping[str, View],
                  watched: frozenset[str] | None) -> list[str]:
    """Where a framework sees a session cookie or identity other than the sidecar's.

    Seeing none (or an empty value) is fine: the app treats the request as anonymous. A
    nameless cookie (a chunk without '=') can be no one's session cookie and is left out.
    """
    out = []
    for column, view in views.items():
        if watched is not None:
            names = {name.encode() for name in watched}
        else:
            names = (set(side.cookies) | set(view.cookies)) - {b""}
        for name in sorted(names):
            seen = view.cookies.get(name)
            if seen and seen != side.cookies.get(name):
                out.append(f"{column}: cookie {name!r} = {seen[:60]!r}, "
                           f"sidecar took {(side.cookies.get(name) or b'')[:60]!r}")
        if view.identity and view.identity != side.identity:
            out.append(f"{column}: Remote-User = {view.identity!r}, sidecar took {side.identity!r}")
    return out


CASES = [pytest.param(r, mode, id=f"{r.id}-{mode}") for r in ROWS for mode in MODES]


@pytest.mark.parametrize(("case", "mode"), CASES)
def test_python_frameworks_see_what_the_sidecar_allowed(case: Row, mode: str) -> None:
    watched = MODES[mode]
    side = sidecar_reads(case.lines, watched)
    views = python_views(case.lines, side.header)
    if side.problems:
        return  # refused (401): nothing reaches the app
    found = disagreements(side, views, watched)
    assert not found, f"{case.id}: the sidecar allowed what the app reads otherwise:\n" + "\n".join(found)


@pytest.mark.parametrize(("case", "mode"), [pytest.param(r, mode, id=f"{r.id}-{mode}") for r in ROWS
                                             for mode in MODES if r.expected(mode) != "probe"])
def test_sidecar_refuses_attacks_and_allows_normal_requests(case: Row, mode: str) -> None:
    problems = sidecar_reads(case.lines, MODES[mode]).problems
    if case.expected(mode) == "attack":
        assert problems, f"{case.id}: a known attack is not flagged as ambiguous"
    else:
        assert not problems, f"{case.id}: an ordinary request is flagged: {problems}"


def test_the_table_keeps_its_attack_and_normal_rows() -> None:
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert {r.kind for r in ROWS} == {"attack", "normal", "probe"}
    assert sum(r.kind == "attack" for r in ROWS) >= 25 and sum(r.kind == "normal" for r in ROWS) >= 7


# -- Node's http module -----------------------------------------------------------------------------
@dataclass
class NodeServer:
    port: int
    answers: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def ask(self, case: Row) -> dict[str, Any] | None:
        """Node's JSON for the row's exact bytes; None when Node refused the request."""
        if case.id not in self.answers:
            self.answers[case.id] = self._send(case.lines)
        return self.answers[case.id]

    def _send(self, lines: Sequence[bytes]) -> dict[str, Any] | None:
        request = (b"GET / HTTP/1.1\r\nHost: differential.test\r\n" + b"".join(x + b"\r\n" for x in lines)
                   + b"Connection: close\r\n\r\n")
        chunks = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(request)
            try:
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except ConnectionResetError:
                return None
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            return None  # 400/431: Node's parser refused the request, the app never sees it
        answer = json.loads(body.decode("utf-8"))
        assert isinstance(answer, dict)
        return answer


def node_missing(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: this must not be skipped)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def node_server() -> Iterator[NodeServer]:
    node = shutil.which("node")
    if node is None:
        node_missing("node not found: needed for the Node http/cookie column of the differential test")
    proc = subprocess.Popen([node, str(NODE_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first:
            node_missing(f"{NODE_SCRIPT.name} did not start (exit code {proc.poll()})")
        yield NodeServer(int(json.loads(first)["port"]))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the script exits when its stdin closes
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def node_views(answer: dict[str, Any] | None) -> dict[str, View]:
    if answer is None:
        return {}

    def as_map(raw: Any) -> dict[bytes, bytes]:
        assert isinstance(raw, dict)
        return {wire(str(k)): wire(str(v)) for k, v in raw.items()}

    user = answer["remote_user"]
    identity = wire(str(user)) if user is not None else None
    return {"node:cookie>=0.7 (express)": View(as_map(answer["cookies"]), identity),
            "node:cookie<0.7 (String.trim)": View(as_map(answer["cookies_legacy"]), identity)}


@pytest.mark.parametrize(("case", "mode"), CASES)
def test_node_sees_what_the_sidecar_allowed(node_server: NodeServer, case: Row, mode: str) -> None:
    watched = MODES[mode]
    side = sidecar_reads(case.lines, watched)
    answer = node_server.ask(case)
    if answer is not None:
        # the exact bytes arrived: every line, repeated ones too; Node's join is the sidecar's
        raw = answer["raw_headers"]
        assert isinstance(raw, list)
        sent = [name.decode("latin-1").lower() for name, _ in header_pairs(case.lines)]
        assert [str(n).lower() for n in raw[0::2]] == ["host", *sent, "connection"]
        if answer["cookie"] is not None:
            assert answer["cookie"] == side.header
    if side.problems:
        return
    found = disagreements(side, node_views(answer), watched)
    assert not found, f"{case.id}: the sidecar allowed a request Node reads otherwise:\n" + "\n".join(found)
