"""End to end through Traefik's ForwardAuth protocol, with deploy/traefik as it is.

No Traefik binary can be installed here: ``tests/e2e/traefik_emulator.py`` reads
deploy/traefik/traefik.yml and dynamic.yml and follows Traefik's code (entrypoint forwarded
headers, routers, forwardAuth, services). The demo app, the sidecar and the emulator are real
processes on free 127.0.0.1 ports; only the ports of the deploy files are replaced.

A browser-like client (cookie jar, no automatic redirects) and API clients go through the
emulator; the protocol tests at the end send exactly what Traefik sends straight to the
sidecar's ``/auth/forward``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest

from tests.e2e.conftest import START_TIMEOUT, Stack, sidecar_config, start, stop, wait_ready
from tests.e2e.steps import (
    API,
    BROWSER,
    assert_allowed,
    assert_challenged,
    challenge_form,
    enroll,
    fresh_wrong_code,
    login,
    logout,
    pass_cookie_set,
    password_client_needs_x_otp,
    remote_users,
)
from tests.e2e.traefik_emulator import (
    EntryPoint,
    ForwardAuth,
    app_set_cookies,
    auth_request_headers,
    entrypoint_headers,
    headers_for_app,
    load_config,
)
from tests.ports import free_port

UNTRUSTED_SOURCE = "127.0.0.2"  # a loopback address outside the sidecar's default trusted_proxies


@dataclass
class Traefik(Stack):
    """The processes of one setup; ``base``/``host`` are the emulated Traefik's entrypoint."""

    app_port: int = 0
    sidecar_port: int = 0

    @property
    def sidecar(self) -> str:
        return f"http://127.0.0.1:{self.sidecar_port}"


def emulator_args(traefik_port: int, app_port: int, sidecar_port: int,
                  source_address: str | None = None) -> list[str]:
    """The emulator with deploy/traefik's files; their ports 8080/8000/9091 mapped to ours."""
    args = [sys.executable, "-m", "tests.e2e.traefik_emulator",
            "--port-map", f"8080:{traefik_port}", "--port-map", f"8000:{app_port}",
            "--port-map", f"9091:{sidecar_port}"]
    return args + (["--source-address", source_address] if source_address else [])


def wait_listening(stack: Stack, name: str, port: int) -> None:
    """Wait until ``port`` accepts connections (for setups where no URL can answer 200)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if stack.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited:\n{stack.all_logs()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} not listening on {port}:\n{stack.all_logs()}")


@contextlib.contextmanager
def running_traefik(tmp: Path, with_sidecar: bool = True) -> Iterator[Traefik]:
    """Demo app + sidecar + emulated Traefik, all on free ports; stopped on exit."""
    traefik_port, app_port, sidecar_port = free_port(), free_port(), free_port()
    config_path = tmp / "sidecar.yaml"
    sidecar_config(config_path, sidecar_port, app_port, tmp / "sidecar.db")
    host = f"127.0.0.1:{traefik_port}"
    stack = Traefik(base=f"http://{host}", host=host, conf_dir=tmp, config_path=config_path,
                    app_port=app_port, sidecar_port=sidecar_port)
    try:
        start(stack, "app", [sys.executable, "-m", "uvicorn", "--factory",
                             "sidecar.demo.app:create_demo_app", "--host", "127.0.0.1",
                             "--port", str(app_port), "--log-level", "warning",
                             "--no-access-log"], tmp)
        if with_sidecar:
            start(stack, "sidecar", [sys.executable, "-m", "sidecar", "serve",
                                     "--config", str(config_path)], tmp)
        start(stack, "traefik", emulator_args(traefik_port, app_port, sidecar_port), tmp)
        wait_ready(stack, "app", f"http://127.0.0.1:{app_port}/healthz")
        if with_sidecar:
            wait_ready(stack, "sidecar", f"{stack.sidecar}/healthz")
            wait_ready(stack, "traefik", f"{stack.base}/healthz")
        else:
            wait_listening(stack, "traefik", traefik_port)
        yield stack
    finally:
        for name in ("traefik", "sidecar", "app"):
            if name in stack.procs:
                stop(stack.procs[name])


@pytest.fixture(scope="module")
def traefik(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traefik]:
    """The whole setup, shared by the module's tests (each test uses its own demo user)."""
    with running_traefik(tmp_path_factory.mktemp("traefik")) as running:
        yield running


@pytest.fixture()
def browser(traefik: Traefik) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=traefik.base, headers=BROWSER, follow_redirects=False,
                      timeout=10.0) as client:
        yield client


def assert_json_error(r: httpx.Response, status: int, error: str) -> None:
    """An answer of the sidecar passed on as it is: status, JSON body, X-Totp-Error."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert set(r.json()) == {"error", "detail"}
    assert r.json()["error"] == error
    assert r.headers["x-totp-error"] == error


# -- the flow through Traefik ----------------------------------------------------------------
def test_enroll_challenge_and_next_step_code(traefik: Traefik, browser: httpx.Client) -> None:
    # Signed in, not enrolled: 2FA is optional, the app is reached and sees Remote-User.
    login(browser, "alice")
    assert_allowed(browser, "alice")
    key, enroll_code, _ = enroll(browser)
    assert_allowed(browser, "alice")

    # A new app session: browsers get the sidecar's 302 as it is, to the challenge with rd.
    logout(browser)
    login(browser, "alice")
    challenge = assert_challenged(traefik, browser)
    # X-Forwarded-* sent by a client are dropped by the entrypoint (no trustedIPs), so
    # trustForwardHeader cannot be used to claim a bypassed path, another host or method.
    r = browser.get("/", headers={"X-Forwarded-Uri": "/healthz", "X-Forwarded-Method": "OPTIONS",
                                  "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
                                  "X-Forwarded-For": "10.9.8.7"})
    assert r.status_code == 302 and r.headers["location"] == challenge
    # X-Original-URL is not a Traefik header: it reaches the sidecar, which refuses a
    # disagreeing one rather than believing it.
    r = browser.get("/", headers={"X-Original-URL": "http://evil.example/healthz", **API})
    assert_json_error(r, 400, "bad_request")

    # API clients: the sidecar's JSON 401, passed on as it is, no Location, no X-OTP.
    for path in ("/", "/api/data?x=1"):
        r = browser.get(path, headers=API)
        assert_json_error(r, 401, "2fa_required")
        assert "location" not in r.headers and "x-otp" not in r.headers

    # A wrong code: 400, no 2FA cookie, still challenged.
    csrf, rd = challenge_form(browser, challenge)
    assert rd == f"{traefik.base}/"
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": fresh_wrong_code(key)})
    assert r.status_code == 400
    assert not pass_cookie_set(r)
    assert_challenged(traefik, browser)

    # The next step's code (enrollment used the current one; the sidecar refuses steps up to
    # the last used one): accepted, back to rd, and the app is reached with Remote-User.
    next_code = pyotp.TOTP(key).at(time.time() + 30)
    assert next_code != enroll_code
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": next_code})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"{traefik.base}/"
    assert pass_cookie_set(r)
    assert_allowed(browser, "alice")
    r = browser.get("/api/data", headers=API)
    assert r.json() == {"ok": True, "user": "alice", "remote_user": "alice"}


def test_password_api_client_needs_x_otp(traefik: Traefik, browser: httpx.Client) -> None:
    password_client_needs_x_otp(traefik.base, browser)


def test_spoofed_remote_user_never_reaches_the_app(traefik: Traefik,
                                                   browser: httpx.Client) -> None:
    spoof = {"Remote-User": "mallory", "Remote-Email": "m@evil.example", "Remote-Name": "M"}
    # Anonymous: the sidecar allows without Remote-User; Traefik still deletes the client's.
    r = browser.get("/", headers=spoof)
    assert r.status_code == 200
    assert "You are not signed in." in r.text
    assert remote_users(r.text) == []
    # Signed in as bob (no 2FA): the app sees bob, only bob.
    login(browser, "bob")
    r = browser.get("/", headers=spoof)
    assert r.status_code == 200
    assert remote_users(r.text) == ["bob"]
    r = browser.get("/api/data", headers={**spoof, **API})
    assert r.json() == {"ok": True, "user": "bob", "remote_user": "bob"}


def test_required_rule_deny_rule_and_app_errors(traefik: Traefik, browser: httpx.Client) -> None:
    login(browser, "bob")  # 2FA off; /reports has level `required` in the sidecar's config
    r = browser.get("/reports?q=1")
    assert r.status_code == 302
    parts = urlsplit(r.headers["location"])
    assert (parts.netloc, parts.path) == (traefik.host, "/_2fa/enroll")
    assert parse_qs(parts.query) == {"rd": [f"{traefik.base}/reports?q=1"]}
    assert_json_error(browser.get("/reports", headers=API), 401, "2fa_enrollment_required")
    # A deny rule: the sidecar's own 403 body reaches the client (Traefik keeps bodies).
    r = browser.get("/denied", headers=API)
    assert_json_error(r, 403, "forbidden")
    assert r.json()["detail"] == "access to this resource is denied"
    # The app's own 401 is the app's, passed through after the sidecar allowed the request.
    logout(browser)
    r = browser.get("/api/data", headers=API)
    assert r.status_code == 401 and r.json() == {"error": "unauthorized"}
    assert r.headers["www-authenticate"].startswith("Basic")
    # /_2fa (the pages router's Path rule) is the sidecar's redirect to its settings page.
    r = browser.get("/_2fa")
    assert r.status_code in (302, 303) and r.headers["location"].endswith("/_2fa/settings")


def test_sidecar_down_fails_closed(tmp_path: Path) -> None:
    """No sidecar: ForwardAuth answers 500 and the app is never called, /healthz included."""
    with running_traefik(tmp_path, with_sidecar=False) as stack, \
            httpx.Client(base_url=stack.base, headers=BROWSER, follow_redirects=False,
                         timeout=10.0) as client:
        assert client.get("/").status_code == 500
        assert client.get("/healthz").status_code == 500  # every path of the app router
        r = client.post("/login", data={"username": "alice", "password": "alice-password"})
        assert r.status_code == 500
        assert "set-cookie" not in r.headers, "the app was reached without the 2FA check"
        assert client.get("/_2fa/settings").status_code == 502


def test_traefik_outside_trusted_proxies_is_refused(traefik: Traefik, tmp_path: Path) -> None:
    """A Traefik whose address is not in server.trusted_proxies: every request fails closed,
    with the sidecar's 403 passed on as it is (the fix: list Traefik's address there)."""
    port = free_port()
    other = Traefik(base=f"http://127.0.0.1:{port}", host=f"127.0.0.1:{port}", conf_dir=tmp_path,
                    config_path=traefik.config_path)
    start(other, "traefik", emulator_args(port, traefik.app_port, traefik.sidecar_port,
                                          UNTRUSTED_SOURCE), tmp_path)
    try:
        wait_listening(other, "traefik", port)
        with httpx.Client(base_url=other.base, headers=API, timeout=10.0) as client:
            assert_json_error(client.get("/healthz"), 403, "untrusted_peer")
            r = client.post("/login", data={"username": "bob", "password": "bob-password"})
            assert_json_error(r, 403, "untrusted_peer")
            assert "set-cookie" not in r.headers
    finally:
        stop(other.procs["traefik"])


# -- the protocol, straight to the sidecar ---------------------------------------------------
def traefik_headers(stack: Traefik, path: str = "/", method: str = "GET",
                    extra: dict[str, str] | None = None) -> dict[str, str]:
    """Exactly what deploy/traefik's forwardAuth sends for a browser's request to ``path``."""
    config = load_config(port_map={8080: int(stack.host.rsplit(":", 1)[1]),
                                   9091: stack.sidecar_port, 8000: stack.app_port})
    incoming = [("host", stack.host), ("user-agent", "Mozilla/5.0"),
                ("accept", BROWSER["Accept"]), *[(k.lower(), v) for k, v in (extra or {}).items()]]
    headers = entrypoint_headers(incoming, peer="127.0.0.1", host=stack.host,
                                 entrypoint=config.entrypoint, hostname="traefik")
    sent = auth_request_headers(headers, auth=config.middlewares["totp-sidecar"], method=method,
                                request_uri=path, host=stack.host, peer="127.0.0.1")
    return dict(sent)


def test_protocol_what_traefik_sends(traefik: Traefik) -> None:
    sent = traefik_headers(traefik, "/api/data?x=1", "POST")
    assert sent == {
        "user-agent": "Mozilla/5.0", "accept": BROWSER["Accept"],
        "x-real-ip": "127.0.0.1", "x-forwarded-proto": "http",
        "x-forwarded-port": traefik.host.rsplit(":", 1)[1], "x-forwarded-host": traefik.host,
        "x-forwarded-server": "traefik", "x-forwarded-for": "127.0.0.1",
        "x-forwarded-method": "POST", "x-forwarded-uri": "/api/data?x=1",
        "accept-encoding": "gzip",
    }
    config = load_config(port_map={9091: traefik.sidecar_port})
    address = config.middlewares["totp-sidecar"].address
    assert address == f"{traefik.sidecar}/auth/forward"
    with httpx.Client(timeout=10.0) as client:
        r = client.get(address, headers=sent)  # anonymous: allowed, no identity
        assert r.status_code == 200, r.text
        assert "remote-user" not in r.headers
        assert "no-store" in r.headers["cache-control"]


def test_protocol_identity_headers(traefik: Traefik, browser: httpx.Client) -> None:
    login(browser, "bob")
    cookie = f"demo_session={browser.cookies['demo_session']}"
    with httpx.Client(timeout=10.0) as client:
        r = client.get(f"{traefik.sidecar}/auth/forward",
                       headers=traefik_headers(traefik, extra={"Cookie": cookie}))
    assert r.status_code == 200, r.text
    assert (r.headers["remote-user"], r.headers["remote-email"], r.headers["remote-name"]) == \
        ("bob", "bob@example.com", "Bob Example")


@pytest.mark.parametrize("missing", ["x-forwarded-uri", "x-forwarded-method", "x-forwarded-host"])
def test_protocol_missing_header_is_400(traefik: Traefik, missing: str) -> None:
    headers = {k: v for k, v in traefik_headers(traefik).items() if k != missing}
    with httpx.Client(timeout=10.0) as client:
        r = client.get(f"{traefik.sidecar}/auth/forward", headers=headers)
    assert_json_error(r, 400, "bad_request")
    assert missing in r.json()["detail"].lower()


def test_protocol_x_original_url_must_agree(traefik: Traefik) -> None:
    url = f"{traefik.sidecar}/auth/forward"
    with httpx.Client(timeout=10.0) as client:
        same = traefik_headers(traefik, "/a?b=c",
                               extra={"X-Original-URL": f"http://{traefik.host}/a?b=c"})
        assert client.get(url, headers=same).status_code == 200
        for other in ("http://evil.example/a?b=c", f"http://{traefik.host}/healthz",
                      f"http://{traefik.host}/a?b=d"):
            r = client.get(url, headers=traefik_headers(traefik, "/a?b=c",
                                                        extra={"X-Original-URL": other}))
            assert_json_error(r, 400, "bad_request")


def test_protocol_untrusted_peer_is_403(traefik: Traefik) -> None:
    transport = httpx.HTTPTransport(local_address=UNTRUSTED_SOURCE)
    with httpx.Client(transport=transport, timeout=10.0) as client:
        r = client.get(f"{traefik.sidecar}/auth/forward", headers=traefik_headers(traefik))
    assert_json_error(r, 403, "untrusted_peer")


# -- the emulator follows Traefik's code ---------------------------------------------------
def test_emulator_header_rules() -> None:
    edge = EntryPoint("web", 8080)
    auth = ForwardAuth("http://127.0.0.1:9091/auth/forward", trust_forward_header=True,
                       auth_response_headers=("Remote-User",))
    client = [("host", "app.example:8080"), ("connection", "keep-alive, X-Drop"), ("x-drop", "1"),
              ("content-length", "3"), ("content-type", "text/plain"), ("cookie", "a=b"),
              ("x-forwarded-uri", "/healthz"), ("x-forwarded-for", "10.0.0.1"),
              ("x-real-ip", "10.0.0.1"), ("remote-user", "mallory"), ("remote_user", "mallory")]
    headers = entrypoint_headers(client, peer="192.0.2.7", host="app.example:8080",
                                 entrypoint=edge, hostname="t")
    sent = dict(auth_request_headers(headers, auth=auth, method="PUT", request_uri="/x?y",
                                     host="app.example:8080", peer="192.0.2.7"))
    assert {k: sent.get(k) for k in ("x-forwarded-uri", "x-forwarded-for", "x-real-ip",
                                     "x-forwarded-method", "x-forwarded-host", "x-drop",
                                     "connection", "content-length", "content-type", "cookie")} == {
        "x-forwarded-uri": "/x?y", "x-forwarded-for": "192.0.2.7", "x-real-ip": "192.0.2.7",
        "x-forwarded-method": "PUT", "x-forwarded-host": "app.example:8080", "x-drop": None,
        "connection": None, "content-length": None, "content-type": "text/plain",
        "cookie": "a=b"}
    # From a trusted front proxy, the incoming values are passed on (and XFF extended).
    behind = EntryPoint("web", 8080, trusted_ips=(ipaddress.ip_network("192.0.2.0/24"),))
    headers = entrypoint_headers(client, peer="192.0.2.7", host="app.example:8080",
                                 entrypoint=behind, hostname="t")
    sent = dict(auth_request_headers(headers, auth=auth, method="PUT", request_uri="/x?y",
                                     host="app.example:8080", peer="192.0.2.7"))
    assert (sent["x-forwarded-uri"], sent["x-forwarded-for"]) == ("/healthz", "10.0.0.1, 192.0.2.7")
    # authResponseHeaders: deleted by exact name, then set from the answer if present.
    assert headers_for_app(client, auth, []).count(("remote-user", "mallory")) == 0
    assert ("remote_user", "mallory") in headers_for_app(client, auth, [])
    assert ("remote-user", "bob") in headers_for_app(client, auth, [("remote-user", "bob")])
    # addAuthCookiesToResponse: only when the answer sets cookies; listed names replaced.
    names = frozenset({"totp_sidecar"})
    app = ["totp_sidecar=stale; Path=/", "session=1; Path=/"]
    assert app_set_cookies(app, [], names) == app
    assert app_set_cookies(app, ["totp_sidecar=new; Path=/", "other=x"], names) == \
        ["session=1; Path=/", "totp_sidecar=new; Path=/"]
