"""One user journey, end to end through each proxy: nginx, Caddy and Traefik (emulated).

Every test runs once per proxy of ``stacks.PROXIES``, with that proxy's deploy files as they
are in front of the demo app and the sidecar (one setup per proxy, shared by its tests; each
test uses its own demo user: alice enrolls, bob never does, carol is the API client). A
browser-like client (cookie jar, no automatic redirects) and API clients get every answer
from the proxy, as a user would. Where the proxies differ for a user, ``ProxySpec`` says how,
and the tests assert each proxy's own answer. What only one proxy has lives in
test_caddy.py (what Caddy sends where) and test_traefik.py (ForwardAuth's protocol).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pyotp
import pytest

from tests.e2e.stacks import PROXIES, ProxySpec, Stack, proxy_binary, running
from tests.e2e.steps import (
    API,
    BROWSER,
    assert_allowed,
    assert_challenged,
    assert_json_error,
    challenge_form,
    enroll,
    fresh_wrong_code,
    login,
    logout,
    pass_cookie_set,
    password_client_needs_x_otp,
    remote_users,
)

IDENTITY_SPOOF = {"Remote-User": "mallory", "Remote_User": "mallory",
                  "Remote-Email": "m@evil.example", "Remote-Name": "M", "Remote-Groups": "admins"}
#: X-Forwarded-* from a client: every proxy overwrites or drops them, so none can claim a
#: bypassed path, another host, scheme or method (Traefik: no trustedIPs on the entrypoint;
#: Caddy trusts no client's X-Forwarded-* by default; nginx sets its own X-Original-URL).
FORWARDED_SPOOFS = (
    {"X-Forwarded-Uri": "/healthz", "X-Forwarded-Method": "OPTIONS",
     "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
     "X-Forwarded-For": "10.9.8.7"},
    {"X-Forwarded-Uri": "/elsewhere", "X-Forwarded-Method": "PUT",
     "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
)


@pytest.fixture(scope="module", params=list(PROXIES))
def spec(request: pytest.FixtureRequest) -> ProxySpec:
    return PROXIES[request.param]


@pytest.fixture(scope="module")
def binary(spec: ProxySpec) -> str:
    return proxy_binary(spec)


@pytest.fixture(scope="module")
def proxied(spec: ProxySpec, binary: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The proxy + sidecar + demo app, shared by the module's tests of this proxy."""
    with running(spec, binary, tmp_path_factory.mktemp(spec.name)) as started:
        yield started


@pytest.fixture()
def browser(proxied: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxied.base, headers=BROWSER, follow_redirects=False,
                      timeout=10.0) as client:
        yield client


def test_enroll_challenge_replay_and_recovery(spec: ProxySpec, proxied: Stack,
                                              browser: httpx.Client) -> None:
    # Signed in, not enrolled: 2FA is optional, the app is reached and sees Remote-User.
    login(browser, "alice")  # a POST through the check: its body still reaches the app
    assert_allowed(browser, "alice")

    # Enrollment through the proxy: key and CSRF token from the page, code from the key.
    key, enroll_code, codes = enroll(browser)
    assert_allowed(browser, "alice")

    # A new app session must pass the challenge: browsers get the sidecar's 302 to it, with
    # the original URL in rd, whatever X-Forwarded-* they send.
    logout(browser)
    login(browser, "alice")
    challenge = assert_challenged(proxied, browser)
    assert challenge == f"{proxied.base}/_2fa/challenge?rd={quote(proxied.base + '/', safe='')}"
    for spoof in FORWARDED_SPOOFS:
        r = browser.get("/", headers=spoof)
        assert r.status_code == 302 and r.headers["location"] == challenge, spoof
    # X-Original-URL is nginx's header: nginx overwrites a client's, Caddy drops it; Traefik
    # passes it on, and the sidecar refuses one that disagrees rather than believing it.
    for url in ("http://evil.example/", "http://evil.example/healthz"):
        for others in ({}, {"X-Forwarded-Host": "evil.example"}, *FORWARDED_SPOOFS):
            spoof = {**others, "X-Original-URL": url}
            r = browser.get("/", headers=spoof)
            if spec.passes_original_url:
                assert_json_error(r, 400, "bad_request")
                assert_json_error(browser.get("/", headers={**spoof, **API}), 400, "bad_request")
            else:
                assert r.status_code == 302 and r.headers["location"] == challenge, spoof
                assert_json_error(browser.get("/", headers={**spoof, **API}), 401, "2fa_required")
    # The original URL, query included, travels in rd.
    r = browser.get("/reports?q=1&x=%2F")
    assert r.status_code == 302
    original = quote(f"{proxied.base}/reports?q=1&x=%2F", safe="")
    assert r.headers["location"] == f"{proxied.base}/_2fa/challenge?rd={original}"

    # API clients: a JSON 401 with the sidecar's error code, no Location, no X-OTP.
    for path in ("/", "/api/data", "/api/data?x=1"):
        r = browser.get(path, headers=API)
        assert_json_error(r, 401, "2fa_required")
        assert "no-store" in r.headers["cache-control"]
        assert "location" not in r.headers and "x-otp" not in r.headers

    # A wrong code: 400, no 2FA cookie, still challenged.
    csrf, rd = challenge_form(browser, challenge)
    assert rd == f"{proxied.base}/"
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": fresh_wrong_code(key)})
    assert r.status_code == 400
    assert "That code is not valid" in r.text
    assert not pass_cookie_set(r)
    assert_challenged(proxied, browser)

    # The next step's code (enrollment used the current one; the sidecar refuses steps up to
    # the last used one): accepted, back to rd, and the app is reached with Remote-User.
    next_code = pyotp.TOTP(key).at(time.time() + 30)
    assert next_code != enroll_code
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": next_code})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"{proxied.base}/"
    assert pass_cookie_set(r)
    assert_allowed(browser, "alice")
    r = browser.get("/api/data", headers=API)
    assert r.json() == {"ok": True, "user": "alice", "remote_user": "alice"}

    # The same code again, in a new app session: a replay, refused.
    logout(browser)
    login(browser, "alice")
    challenge = assert_challenged(proxied, browser)
    csrf, rd = challenge_form(browser, challenge)
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "totp",
                                              "code": next_code})
    assert r.status_code == 400, "a used TOTP code was accepted again"
    assert not pass_cookie_set(r)
    assert_challenged(proxied, browser)

    # A recovery code, upper case without the dash, with an rd to a foreign host (also sent
    # as a spoofed X-Forwarded-Host, which the proxy overwrites): accepted, rd falls back to /.
    csrf, rd = challenge_form(browser, "/_2fa/challenge?method=recovery&rd=https://evil.example/")
    assert rd == "/"
    recovery = codes[0]
    r = browser.post("/_2fa/challenge", headers={"X-Forwarded-Host": "evil.example"},
                     data={"csrf": csrf, "rd": "https://evil.example/", "mode": "recovery",
                           "code": recovery.replace("-", "").upper()})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"
    assert pass_cookie_set(r)
    assert_allowed(browser, "alice")

    # The same recovery code in a new app session: used up, refused.
    logout(browser)
    login(browser, "alice")
    challenge = assert_challenged(proxied, browser)
    csrf, rd = challenge_form(browser, challenge)
    r = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "mode": "recovery",
                                              "code": recovery})
    assert r.status_code == 400, "a used recovery code was accepted again"
    assert not pass_cookie_set(r)
    assert_challenged(proxied, browser)


def test_spoofed_identity_never_reaches_the_app(browser: httpx.Client) -> None:
    # Anonymous: the sidecar lets the request pass with no identity; the app must see none.
    r = browser.get("/", headers=IDENTITY_SPOOF)
    assert r.status_code == 200
    assert "You are not signed in." in r.text
    assert remote_users(r.text) == []
    # Signed in as bob (no 2FA): the app sees bob, only bob.
    login(browser, "bob")
    r = browser.get("/", headers=IDENTITY_SPOOF)
    assert r.status_code == 200
    assert remote_users(r.text) == ["bob"]
    r = browser.get("/api/data", headers={**IDENTITY_SPOOF, **API})
    assert r.status_code == 200
    assert r.json() == {"ok": True, "user": "bob", "remote_user": "bob"}
    # The pages are not protected by the check, but get no client identity either.
    r = browser.get("/_2fa/settings", headers=IDENTITY_SPOOF)
    assert r.status_code == 200


def test_required_rule_sends_to_enrollment(proxied: Stack, browser: httpx.Client) -> None:
    login(browser, "bob")  # 2FA off; /reports has level `required` in the sidecar's config
    for path in ("/reports", "/reports?q=1"):
        r = browser.get(path)
        assert r.status_code == 302
        parts = urlsplit(r.headers["location"])
        assert (parts.netloc, parts.path) == (proxied.host, "/_2fa/enroll")
        assert parse_qs(parts.query) == {"rd": [f"{proxied.base}{path}"]}
    r = browser.get("/reports", headers=API)
    assert_json_error(r, 401, "2fa_enrollment_required")
    assert "set up" in r.json()["detail"]
    assert_allowed(browser, "bob")  # elsewhere 2FA stays optional


def test_password_api_client_needs_x_otp(proxied: Stack, browser: httpx.Client) -> None:
    password_client_needs_x_otp(proxied.base, browser)


def test_app_errors_deny_rule_and_pages(spec: ProxySpec, proxied: Stack,
                                        browser: httpx.Client) -> None:
    # The app's own 401 (after the sidecar allowed the request) comes through as the app
    # wrote it: not mistaken for the sidecar's (nginx: error_page only catches auth_request).
    r = browser.get("/api/data", headers=API)
    assert r.status_code == 401
    assert r.json() == {"error": "unauthorized"}
    assert r.headers["www-authenticate"].startswith("Basic")
    # A deny rule in the sidecar's config (/denied): a JSON 403, for browsers too.
    for headers in (API, BROWSER):
        r = browser.get("/denied", headers=headers)
        assert_json_error(r, 403, "forbidden")
        assert r.json() == {"error": "forbidden", "detail": "access to this resource is denied"}
    # /_2fa without the slash is the settings page; the pages come from the sidecar.
    r = browser.get("/_2fa")
    status, absolute = spec.settings_redirect
    assert r.status_code == status
    assert r.headers["location"] == (proxied.base if absolute else "") + "/_2fa/settings"
    r = browser.get("/_2fa/challenge?rd=/")  # not signed in: the sidecar's "Sign in first"
    assert r.status_code == 401 and "Sign in first" in r.text
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_sidecar_down_fails_closed(spec: ProxySpec, binary: str, tmp_path: Path) -> None:
    """No sidecar: protected paths fail (nginx and Traefik 500, Caddy 502) and the app is
    never called; the pages answer 502."""
    down = spec.sidecar_down_status
    with running(spec, binary, tmp_path, with_sidecar=False) as stack, \
            httpx.Client(base_url=stack.base, headers=BROWSER, follow_redirects=False,
                         timeout=10.0) as client:
        assert client.get("/").status_code == down
        assert client.get("/api/data", headers=API).status_code == down
        r = client.post("/login", data={"username": "alice", "password": "alice-password"})
        assert r.status_code == down
        assert "set-cookie" not in r.headers, "the app was reached without the 2FA check"
        assert client.get("/_2fa/settings").status_code == 502
        r = client.get("/healthz")
        if spec.checks_healthz:  # Traefik: every path of the app's router is checked
            assert r.status_code == down
        else:  # unprotected paths keep working
            assert r.status_code == 200 and r.text == "ok"


def test_proxy_outside_trusted_proxies_is_refused(spec: ProxySpec, binary: str,
                                                  tmp_path: Path) -> None:
    """A proxy whose address is not in server.trusted_proxies: every checked request fails
    closed with the sidecar's 403 untrusted_peer (the fix: list the proxy's address there)."""
    extra = {"server": {"trusted_proxies": ["192.0.2.0/24"]}}  # not 127.0.0.1
    with running(spec, binary, tmp_path, extra_config=extra) as stack, \
            httpx.Client(base_url=stack.base, headers=API, timeout=10.0) as client:
        r = client.get("/healthz")
        if spec.checks_healthz:
            assert_json_error(r, 403, "untrusted_peer")
        else:
            assert r.status_code == 200 and r.text == "ok"
        assert_json_error(client.get("/"), 403, "untrusted_peer")
        r = client.post("/login", data={"username": "bob", "password": "bob-password"})
        assert_json_error(r, 403, "untrusted_peer")
        assert "set-cookie" not in r.headers
