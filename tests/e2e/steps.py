"""Steps of a browser-like client going through the app and the sidecar's pages."""

from __future__ import annotations

import base64
import html
import re
import time
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp


class Stack(Protocol):
    """What the tests use of a running ``stacks.Stack``."""

    base: str  # http://127.0.0.1:<proxy port>
    host: str  # 127.0.0.1:<proxy port>


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
API = {"Accept": "application/json"}
PASS_COOKIE = "totp_sidecar"
RECOVERY_FORMAT = re.compile(r"^[a-hj-km-np-z2-9]{5}-[a-hj-km-np-z2-9]{5}$")


def login(client: httpx.Client, user: str) -> None:
    r = client.post("/login", data={"username": user, "password": f"{user}-password",
                                    "next": "/"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/"
    assert client.cookies.get("demo_session"), "the app set no session cookie"


def logout(client: httpx.Client) -> None:
    r = client.post("/logout")
    assert r.status_code == 303, r.text
    assert client.cookies.get("demo_session") is None, "the app's logout kept the session"


def remote_users(page: str) -> list[str]:
    """What the demo app says the proxy passed as Remote-User (one entry per line shown)."""
    return [html.unescape(m) for m in re.findall(r"Proxy says: Remote-User = ([^<]*)</p>", page)]


def hidden(page: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', page)
    assert match, f"no hidden input {name!r} in the page"
    return html.unescape(match.group(1))


def pass_cookie_set(response: httpx.Response) -> bool:
    return any(v.startswith(f"{PASS_COOKIE}=") and "Max-Age=0" not in v
               for v in response.headers.get_list("set-cookie"))


def assert_allowed(client: httpx.Client, user: str) -> None:
    r = client.get("/")
    assert r.status_code == 200, f"expected the app, got {r.status_code} {r.headers}"
    assert remote_users(r.text) == [user]
    assert f"Signed in as {user}" in r.text


def assert_json_error(r: httpx.Response, status: int, error: str) -> None:
    """An answer of the sidecar as the client gets it: status, JSON body, X-Totp-Error."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert set(r.json()) == {"error", "detail"}
    assert r.json()["error"] == error
    assert r.headers["x-totp-error"] == error


def assert_challenged(stack: Stack, client: httpx.Client, path: str = "/") -> str:
    """GET ``path`` as a browser: a 302 from the proxy to the challenge page; returns its URL."""
    r = client.get(path)
    assert r.status_code == 302, f"expected the challenge redirect, got {r.status_code}"
    location = r.headers["location"]
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", stack.host, "/_2fa/challenge")
    assert parse_qs(parts.query) == {"rd": [f"{stack.base}{path}"]}
    assert "no-store" in r.headers.get("cache-control", "")
    return location


def fresh_wrong_code(key: str) -> str:
    """A 6-digit code that matches none of the steps the sidecar could accept now."""
    totp = pyotp.TOTP(key)
    now = time.time()
    near = {totp.at(now + k * 30) for k in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(0, 1_000_000, 7919)) if c not in near)


def enroll(client: httpx.Client) -> tuple[str, str, list[str]]:
    """Turn 2FA on for the signed-in user: (key, the code used, the recovery codes)."""
    r = client.get("/_2fa/enroll")
    assert r.status_code == 200, r.text
    key_match = re.search(r'<code id="secret-key">([A-Z2-7 ]+)</code>', r.text)
    assert key_match, "no secret key on the enrollment page"
    key = key_match.group(1).replace(" ", "")
    assert len(key) == 32
    code = pyotp.TOTP(key).now()
    r = client.post("/_2fa/enroll", data={"csrf": hidden(r.text, "csrf"), "code": code, "rd": ""},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/_2fa/recovery-codes", r.text
    assert pass_cookie_set(r), "enrollment must pass this session (2FA cookie)"
    r = client.get("/_2fa/recovery-codes", follow_redirects=False)  # POST, then GET: Back is safe
    assert r.status_code == 200, r.text
    codes_block = re.search(r'<ol class="codes"[^>]*>(.*?)</ol>', r.text, re.S)
    assert codes_block, "no recovery codes on the page"
    codes = re.findall(r"<li><code>([^<]+)</code></li>", codes_block.group(1))
    assert len(codes) == 20 and len(set(codes)) == 20
    assert all(RECOVERY_FORMAT.match(c) for c in codes), codes
    return key, code, codes


def challenge_form(client: httpx.Client, url: str) -> tuple[str, str]:
    r = client.get(url)
    assert r.status_code == 200, r.text
    assert 'action="/_2fa/challenge"' in r.text
    return hidden(r.text, "csrf"), hidden(r.text, "rd")



def password_client_needs_x_otp(base: str, browser: httpx.Client) -> None:
    """An API script with Basic auth for a user with 2FA on, through whichever proxy is at
    ``base``: refused without X-OTP, refused with a wrong code, served with a fresh one (twice:
    the second call is within api.burst_seconds), and the app sees the real user."""
    login(browser, "carol")
    key, _, _ = enroll(browser)  # used the current step
    auth = "Basic " + base64.b64encode(b"carol:carol-password").decode()
    with httpx.Client(base_url=base, headers={**API, "Authorization": auth},
                      follow_redirects=False, timeout=10.0) as api:
        r = api.get("/api/data")
        assert r.status_code == 401
        assert r.json()["error"] == "otp_required" and "X-OTP" in r.json()["detail"]
        assert r.headers["x-otp"] == "required; app"
        assert r.headers["x-totp-error"] == "otp_required"
        r = api.get("/api/data", headers={"X-OTP": fresh_wrong_code(key)})
        assert r.status_code == 401
        assert r.json()["error"] == "otp_invalid"
        assert r.headers["x-otp"] == "required; app"
        code = pyotp.TOTP(key).at(time.time() + 30)  # a step not used yet
        for _ in range(2):
            r = api.get("/api/data", headers={"X-OTP": code, "Remote-User": "mallory"})
            assert r.status_code == 200, r.text
            assert r.json() == {"ok": True, "user": "carol", "remote_user": "carol"}
