"""Traefik's ForwardAuth protocol, with deploy/traefik as it is, and the emulator's rules.

No Traefik binary can be installed here: ``tests/e2e/traefik_emulator.py`` reads
deploy/traefik/traefik.yml and dynamic.yml and follows Traefik's code (entrypoint forwarded
headers, routers, forwardAuth, services). The user journey through it is test_journey.py's,
the same as for nginx and Caddy. Here, the protocol tests send exactly what Traefik sends
straight to the sidecar's ``/auth/forward``, and the emulator's header rules are checked
against Traefik's code.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.stacks import TRAEFIK, Stack, proxy_binary, running
from tests.e2e.steps import BROWSER, assert_json_error, login
from tests.e2e.traefik_emulator import (
    EntryPoint,
    ForwardAuth,
    app_set_cookies,
    auth_request_headers,
    entrypoint_headers,
    headers_for_app,
    load_config,
)

UNTRUSTED_SOURCE = "127.0.0.2"  # a loopback address outside the sidecar's default trusted_proxies


@pytest.fixture(scope="module")
def traefik(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Demo app + sidecar + emulated Traefik, shared by the module's tests."""
    with running(TRAEFIK, proxy_binary(TRAEFIK), tmp_path_factory.mktemp("traefik")) as started:
        yield started


@pytest.fixture()
def browser(traefik: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=traefik.base, headers=BROWSER, follow_redirects=False,
                      timeout=10.0) as client:
        yield client


# -- the protocol, straight to the sidecar ---------------------------------------------------
def traefik_headers(stack: Stack, path: str = "/", method: str = "GET",
                    extra: dict[str, str] | None = None) -> dict[str, str]:
    """Exactly what deploy/traefik's forwardAuth sends for a browser's request to ``path``."""
    config = load_config(port_map={8080: stack.port, 9091: stack.sidecar_port,
                                   8000: stack.app_port})
    incoming = [("host", stack.host), ("user-agent", "Mozilla/5.0"),
                ("accept", BROWSER["Accept"]), *[(k.lower(), v) for k, v in (extra or {}).items()]]
    headers = entrypoint_headers(incoming, peer="127.0.0.1", host=stack.host,
                                 entrypoint=config.entrypoint, hostname="traefik")
    sent = auth_request_headers(headers, auth=config.middlewares["totp-sidecar"], method=method,
                                request_uri=path, host=stack.host, peer="127.0.0.1")
    return dict(sent)


def test_protocol_what_traefik_sends(traefik: Stack) -> None:
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


def test_protocol_identity_headers(traefik: Stack, browser: httpx.Client) -> None:
    login(browser, "bob")
    cookie = f"demo_session={browser.cookies['demo_session']}"
    with httpx.Client(timeout=10.0) as client:
        r = client.get(f"{traefik.sidecar}/auth/forward",
                       headers=traefik_headers(traefik, extra={"Cookie": cookie}))
    assert r.status_code == 200, r.text
    assert (r.headers["remote-user"], r.headers["remote-email"], r.headers["remote-name"]) == \
        ("bob", "bob@example.com", "Bob Example")


@pytest.mark.parametrize("missing", ["x-forwarded-uri", "x-forwarded-method", "x-forwarded-host"])
def test_protocol_missing_header_is_400(traefik: Stack, missing: str) -> None:
    headers = {k: v for k, v in traefik_headers(traefik).items() if k != missing}
    with httpx.Client(timeout=10.0) as client:
        r = client.get(f"{traefik.sidecar}/auth/forward", headers=headers)
    assert_json_error(r, 400, "bad_request")
    assert missing in r.json()["detail"].lower()


def test_protocol_x_original_url_must_agree(traefik: Stack) -> None:
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


def test_protocol_untrusted_peer_is_403(traefik: Stack) -> None:
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
