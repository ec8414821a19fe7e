"""The demo app on its own, and the dev proxy between a fake sidecar and the demo app.

The proxy tests run real uvicorn servers on 127.0.0.1 (in threads) so that the proxy talks
HTTP to its upstreams exactly as it would in development.
"""

from __future__ import annotations

import base64
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.demo.app import DEMO_USERS, SESSION_COOKIE, create_demo_app
from sidecar.demo.devproxy import create_dev_proxy
from tests.ports import free_port

# --------------------------------------------------------------------------- helpers


class ServerThread:
    """A uvicorn server for ``app`` on a free 127.0.0.1 port, running in a daemon thread."""

    def __init__(self, app: ASGIApp) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="auto",
            proxy_headers=False,  # else uvicorn believes X-Forwarded-For from 127.0.0.1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()




@dataclass
class Seen:
    """What an upstream received: method, path, query, lower-case headers, body."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


@dataclass
class Recorder:
    """ASGI middleware remembering every HTTP request that reaches the wrapped app."""

    app: ASGIApp
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        self.seen.append(
            Seen(scope["method"], scope["path"], scope["query_string"].decode(), headers, body)
        )
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@dataclass
class FakeSidecar:
    """What ``/auth/nginx`` answers next: status, extra headers and body."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_type: str = "text/plain"

    def allow(self, user: str = "alice", **extra: str) -> None:
        self.status, self.body = 200, b""
        self.headers = [("Remote-User", user), *extra.items()]

    async def auth(self, request: Request) -> Response:
        headers = {} if not self.body else {"content-type": self.content_type}
        response = Response(self.body, status_code=self.status, headers=headers)
        for name, value in self.headers:
            response.headers.append(name, value)
        return response

    async def own_page(self, request: Request) -> Response:
        body = await request.body()
        response = JSONResponse({"sidecar": request.url.path, "body": body.decode()})
        response.set_cookie("sc_one", "1")
        response.set_cookie("sc_two", "2")
        return response

    async def gzipped(self, request: Request) -> Response:
        body = gzip.compress(b"hello " * 50)
        return Response(body, headers={"content-encoding": "gzip"}, media_type="text/plain")

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "DELETE"]
        return Starlette(
            routes=[
                Route("/auth/nginx", self.auth, methods=["GET"]),
                Route("/_2fa/gz", self.gzipped, methods=["GET"]),
                Route("/_2fa", self.own_page, methods=methods),
                Route("/_2fa/{rest:path}", self.own_page, methods=methods),
            ]
        )


@dataclass
class Stack:
    sidecar: FakeSidecar
    sidecar_seen: Recorder
    app_seen: Recorder
    proxy_url: str
    dead_proxy_url: str

    def auth_requests(self) -> list[Seen]:
        return [s for s in self.sidecar_seen.seen if s.path == "/auth/nginx"]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def servers() -> Iterator[Stack]:
    sidecar = FakeSidecar()
    sidecar_rec = Recorder(sidecar.app())
    app_rec = Recorder(create_demo_app())
    started: list[ServerThread] = []
    try:
        app_srv = ServerThread(app_rec).start()
        started.append(app_srv)
        side_srv = ServerThread(sidecar_rec).start()
        started.append(side_srv)
        proxy = ServerThread(create_dev_proxy(app_srv.url, side_srv.url)).start()
        started.append(proxy)
        dead_sidecar = f"http://127.0.0.1:{free_port()}"
        dead = ServerThread(create_dev_proxy(app_srv.url, dead_sidecar)).start()
        started.append(dead)
        yield Stack(sidecar, sidecar_rec, app_rec, proxy.url, dead.url)
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture()
def stack(servers: Stack) -> Stack:
    servers.sidecar.allow()
    servers.sidecar_seen.seen.clear()
    servers.app_seen.seen.clear()
    return servers


@pytest.fixture()
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.proxy_url, follow_redirects=False, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def demo_server() -> Iterator[ServerThread]:
    server = ServerThread(create_demo_app()).start()
    yield server
    server.stop()


@pytest.fixture()
def demo(demo_server: ServerThread) -> Iterator[httpx.Client]:
    """A fresh client (own cookie jar) for the demo app alone."""
    with httpx.Client(base_url=demo_server.url, follow_redirects=False, timeout=10) as c:
        yield c


def with_session(token: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


# --------------------------------------------------------------------------- demo app alone


def login(c: httpx.Client, user: str = "alice", **extra: str) -> httpx.Response:
    data = {"username": user, "password": DEMO_USERS[user][0], **extra}
    return c.post("/login", data=data)


def test_demo_home_anonymous_links_to_login(demo: httpx.Client) -> None:
    page = demo.get("/")
    assert page.status_code == 200
    assert '<html lang="en">' in page.text
    assert 'href="/login"' in page.text
    assert "Proxy says" not in page.text


def test_demo_login_form_is_accessible(demo: httpx.Client) -> None:
    page = demo.get("/login?next=/reports")
    assert page.status_code == 200
    assert '<label for="username">' in page.text and '<label for="password">' in page.text
    assert 'autocomplete="current-password"' in page.text
    assert 'name="next" value="/reports"' in page.text


def test_demo_login_sets_session_and_redirects_to_next(demo: httpx.Client) -> None:
    response = login(demo, next="/reports")
    assert response.status_code == 303
    assert response.headers["location"] == "/reports"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Signed in as alice" in demo.get("/").text
    reports = demo.get("/reports")
    assert reports.status_code == 200 and "Reports" in reports.text


def test_demo_wrong_password_is_401(demo: httpx.Client) -> None:
    response = demo.post("/login", data={"username": "alice", "password": "nope"})
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert "set-cookie" not in response.headers
    unknown = demo.post("/login", data={"username": "mallory", "password": "x"})
    assert unknown.status_code == 401


def test_demo_every_login_creates_a_new_token(demo: httpx.Client) -> None:
    first = login(demo).cookies[SESSION_COOKIE]
    second = login(demo).cookies[SESSION_COOKIE]
    assert first != second
    # The old credential is gone; the new one works.
    demo.cookies.clear()
    assert demo.get("/api/me", headers=with_session(first)).status_code == 401
    assert demo.get("/api/me", headers=with_session(second)).status_code == 200


def test_demo_logout_invalidates_the_session(demo: httpx.Client) -> None:
    token = login(demo).cookies[SESSION_COOKIE]
    response = demo.post("/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    demo.cookies.clear()
    assert demo.get("/api/me", headers=with_session(token)).status_code == 401
    login(demo)
    assert demo.get("/logout").status_code == 303


def test_demo_reports_redirects_anonymous_to_login(demo: httpx.Client) -> None:
    response = demo.get("/reports")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/reports"


def test_demo_api_me_with_cookie(demo: httpx.Client) -> None:
    login(demo, "bob")
    response = demo.get("/api/me")
    assert response.status_code == 200
    assert response.json() == {"user": "bob", "email": "bob@example.com", "name": "Bob Example",
                               "groups": ["staff"]}


def test_demo_api_me_with_basic(demo: httpx.Client) -> None:
    ok = demo.get("/api/me", headers={"Authorization": basic("carol", "carol-password")})
    assert ok.status_code == 200 and ok.json()["user"] == "carol"
    bad = demo.get("/api/me", headers={"Authorization": basic("carol", "wrong")})
    assert bad.status_code == 401 and bad.json() == {"error": "unauthorized"}
    junk = demo.get("/api/me", headers={"Authorization": "Basic !!!"})
    assert junk.status_code == 401


def test_demo_api_anonymous_is_401_json(demo: httpx.Client) -> None:
    for path in ("/api/me", "/api/data"):
        response = demo.get(path)
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}


def test_demo_api_data_echoes_remote_user(demo: httpx.Client) -> None:
    headers = {"Authorization": basic("alice", "alice-password"), "Remote-User": "zed"}
    response = demo.get("/api/data", headers=headers)
    assert response.json() == {"ok": True, "user": "alice", "remote_user": "zed"}


@pytest.mark.parametrize(
    "target",
    ["//evil.com", "https://evil.com/", "/\\evil.com", "evil.com", "", "/%0d\n/x"],
)
def test_demo_login_refuses_open_redirects(demo: httpx.Client, target: str) -> None:
    response = login(demo, next=target)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_demo_escapes_user_input(demo: httpx.Client) -> None:
    response = demo.post("/login", data={"username": "<script>x</script>", "password": "p"})
    assert "<script>x</script>" not in response.text
    assert "&lt;script&gt;" in response.text
    page = demo.get("/", headers={"Remote-User": "<b>x</b>"})
    assert "Proxy says: Remote-User = &lt;b&gt;x&lt;/b&gt;" in page.text


def test_demo_healthz(demo: httpx.Client) -> None:
    response = demo.get("/healthz")
    assert response.status_code == 200 and response.text == "ok"


# --------------------------------------------------------------------------- dev proxy


def test_proxy_allowed_request_reaches_app_with_remote_user(
    stack: Stack, client: httpx.Client
) -> None:
    stack.sidecar.allow("alice", **{"Remote-Email": "a@example.com", "Remote-Groups": "admins"})
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "Proxy says: Remote-User = alice" in page.text
    [seen] = stack.app_seen.seen
    assert seen.header("remote-user") == "alice"
    assert seen.header("remote-email") == "a@example.com"
    assert seen.header("remote-groups") == "admins"
    assert seen.header("host") == client.base_url.netloc.decode()
    assert seen.header("x-forwarded-for") == "127.0.0.1"


def test_proxy_subrequest_carries_original_request(stack: Stack, client: httpx.Client) -> None:
    headers = {
        "Authorization": basic("alice", "alice-password"),
        "Cookie": "a=1; b=2",
        "User-Agent": "pytest-agent",
        "X-Original-URL": "http://spoofed/",
        "X-Custom": "yes",
    }
    response = client.get("/api/data?x=1&y=2", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "user": "alice", "remote_user": "alice"}
    [auth] = stack.auth_requests()
    host = client.base_url.netloc.decode()
    assert auth.method == "GET" and auth.body == b""
    assert auth.header("x-original-url") == f"http://{host}/api/data?x=1&y=2"
    assert auth.all("x-original-url") == [f"http://{host}/api/data?x=1&y=2"]
    assert auth.header("x-original-method") == "GET"
    assert auth.header("x-forwarded-for") == "127.0.0.1"
    assert auth.header("authorization") == headers["Authorization"]
    assert auth.header("cookie") == "a=1; b=2"
    assert auth.header("user-agent") == "pytest-agent"
    assert auth.header("x-custom") == "yes"
    assert auth.header("host") == host


def test_proxy_post_body_goes_to_app_not_to_subrequest(stack: Stack, client: httpx.Client) -> None:
    response = login(client, "bob", next="/reports")
    assert response.status_code == 303
    assert response.headers["location"] == "/reports"
    [auth] = stack.auth_requests()
    assert auth.body == b"" and auth.header("content-length") in (None, "0")
    assert auth.header("x-original-method") == "POST"
    assert auth.header("content-type") == "application/x-www-form-urlencoded"
    [seen] = stack.app_seen.seen
    assert seen.method == "POST" and b"username=bob" in seen.body
    assert client.get("/reports").status_code == 200


def test_proxy_401_with_location_becomes_302(stack: Stack, client: httpx.Client) -> None:
    stack.sidecar.status = 401
    stack.sidecar.headers = [("Location", "http://testhost/_2fa/verify?rd=%2Freports")]
    response = client.get("/reports")
    assert response.status_code == 302
    assert response.headers["location"] == "http://testhost/_2fa/verify?rd=%2Freports"
    assert stack.app_seen.seen == []


def test_proxy_401_json_passes_through(stack: Stack, client: httpx.Client) -> None:
    stack.sidecar.status = 401
    stack.sidecar.body = b'{"error": "otp_required"}'
    stack.sidecar.content_type = "application/json"
    stack.sidecar.headers = [
        ("WWW-Authenticate", 'Basic realm="app"'),
        ("X-OTP", "required"),
        ("X-Other", "not copied"),
    ]
    response = client.get("/api/me", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "otp_required"}
    assert response.headers["www-authenticate"] == 'Basic realm="app"'
    assert response.headers["x-otp"] == "required"
    assert "x-other" not in response.headers
    assert stack.app_seen.seen == []


def test_proxy_403_passes_through(stack: Stack, client: httpx.Client) -> None:
    stack.sidecar.status = 403
    stack.sidecar.body = b"<p>denied</p>"
    stack.sidecar.content_type = "text/html; charset=utf-8"
    response = client.get("/reports")
    assert response.status_code == 403
    assert response.text == "<p>denied</p>"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert stack.app_seen.seen == []


@pytest.mark.parametrize("status", [500, 502, 302, 404])
def test_proxy_unexpected_auth_status_is_500(
    stack: Stack, client: httpx.Client, status: int
) -> None:
    stack.sidecar.status = status
    stack.sidecar.headers = [("Location", "/elsewhere")]
    response = client.get("/api/data", headers={"Authorization": basic("bob", "bob-password")})
    assert response.status_code == 500
    assert response.text == "auth service unavailable"
    assert stack.app_seen.seen == []


def test_proxy_sidecar_down_is_500_and_app_not_called(stack: Stack) -> None:
    with httpx.Client(base_url=stack.dead_proxy_url, timeout=10) as c:
        response = c.post("/login", data={"username": "alice", "password": "alice-password"})
    assert response.status_code == 500
    assert response.text == "auth service unavailable"
    assert stack.app_seen.seen == []


def test_proxy_strips_client_identity_headers(stack: Stack, client: httpx.Client) -> None:
    stack.sidecar.allow("alice")
    spoofed = {
        "Remote-User": "mallory",
        "Remote_User": "mallory",
        "Remote-Email": "m@evil.test",
        "Remote-Groups": "admins",
    }
    response = client.get("/", headers=spoofed)
    assert "Proxy says: Remote-User = alice" in response.text
    assert "mallory" not in response.text
    [seen] = stack.app_seen.seen
    assert seen.all("remote-user") == ["alice"]
    assert seen.all("remote_user") == []
    assert seen.all("remote-email") == [] and seen.all("remote-groups") == []


def test_proxy_anonymous_app_401_reaches_client(stack: Stack, client: httpx.Client) -> None:
    stack.sidecar.headers = []  # "optional" level: sidecar lets it through, no identity
    response = client.get("/api/data", headers={"Remote-User": "mallory"})
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    [seen] = stack.app_seen.seen
    assert seen.all("remote-user") == []


def test_proxy_prefix_goes_to_sidecar_without_subrequest(
    stack: Stack, client: httpx.Client
) -> None:
    response = client.post(
        "/_2fa/verify?rd=/x",
        content=b"code=123456",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Forwarded-For": "6.6.6.6",
        },
    )
    assert response.status_code == 200
    assert response.json() == {"sidecar": "/_2fa/verify", "body": "code=123456"}
    assert response.headers.get_list("set-cookie") == [
        "sc_one=1; Path=/; SameSite=lax",
        "sc_two=2; Path=/; SameSite=lax",
    ]
    assert stack.auth_requests() == []
    assert stack.app_seen.seen == []
    [seen] = stack.sidecar_seen.seen
    host = client.base_url.netloc.decode()
    assert seen.query == "rd=/x"
    assert seen.header("x-forwarded-proto") == "http"
    assert seen.header("x-forwarded-host") == host
    assert seen.all("x-forwarded-for") == ["127.0.0.1"]
    assert seen.header("host") == host
    assert client.get("/_2fa").json()["sidecar"] == "/_2fa"


def test_proxy_prefix_lookalike_is_not_the_sidecar(stack: Stack, client: httpx.Client) -> None:
    stack.sidecar.status = 401
    stack.sidecar.headers = [("Location", "/_2fa/verify")]
    response = client.get("/_2fab/x")
    assert response.status_code == 302
    assert len(stack.auth_requests()) == 1


def test_proxy_adds_subrequest_set_cookies(stack: Stack, client: httpx.Client) -> None:
    stack.sidecar.allow("carol", **{"Set-Cookie": "tfa_session=abc; Path=/; HttpOnly"})
    stack.sidecar.headers.append(("Set-Cookie", "tfa_seen=1; Path=/"))
    response = login(client, "carol")
    assert response.status_code == 303
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 3
    assert cookies[0].startswith(f"{SESSION_COOKIE}=")
    assert cookies[1:] == ["tfa_session=abc; Path=/; HttpOnly", "tfa_seen=1; Path=/"]
    # Set-Cookie of the auth response is for the client, never for the app.
    [seen] = stack.app_seen.seen
    assert seen.all("set-cookie") == []


def test_proxy_does_not_follow_app_redirects(stack: Stack, client: httpx.Client) -> None:
    response = client.get("/reports")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/reports"
    assert len(stack.app_seen.seen) == 1


def test_proxy_keeps_compressed_bodies_intact(stack: Stack, client: httpx.Client) -> None:
    response = client.get("/_2fa/gz", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-length"] == str(len(gzip.compress(b"hello " * 50)))
    assert response.text == "hello " * 50


def test_proxy_head_keeps_content_length(stack: Stack, client: httpx.Client) -> None:
    response = client.head("/healthz")
    assert response.status_code == 200
    assert response.headers["content-length"] == "2"
    assert response.content == b""


def test_proxy_does_not_duplicate_server_and_date(stack: Stack, client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert len(response.headers.get_list("date")) == 1
    assert len(response.headers.get_list("server")) == 1


def test_proxy_does_not_share_cookies_between_clients(stack: Stack) -> None:
    with httpx.Client(base_url=stack.proxy_url, timeout=10) as first:
        assert login(first, "alice").status_code == 303
        assert first.get("/api/me").status_code == 200
    with httpx.Client(base_url=stack.proxy_url, timeout=10) as second:
        assert second.get("/api/me").status_code == 401
