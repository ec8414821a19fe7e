"""A small demo web app with its own password login and no knowledge of the sidecar.

It stands in for "any web app" behind the TOTP sidecar: it has users, a login form, server-side
sessions in a ``demo_session`` cookie, an HTML area and a tiny JSON API that also accepts HTTP
Basic credentials. It prints the ``Remote-User`` header it receives so that one can see what the
reverse proxy passed on. Everything lives in memory; a restart logs everybody out.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, Template
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

SESSION_COOKIE = "demo_session"
#: Another session cookie name for a second demo app beside the first (several apps, one sidecar).
SESSION_COOKIE_ENV = "DEMO_SESSION_COOKIE"

#: username -> (password, email, display name)
DEMO_USERS: dict[str, tuple[str, str, str]] = {
    "alice": ("alice-password", "alice@example.com", "Alice Example"),
    "bob": ("bob-password", "bob@example.com", "Bob Example"),
    "carol": ("carol-password", "carol@example.com", "Carol Example"),
}
#: Groups the app reports in /api/me (the sidecar's rules may match on them).
DEMO_GROUPS: dict[str, list[str]] = {"alice": ["staff"], "bob": ["staff"], "carol": ["admins"]}

_NO_STORE = {"Cache-Control": "no-store"}
_UNAUTHORIZED_HEADERS = {**_NO_STORE, "WWW-Authenticate": 'Basic realm="demo", charset="UTF-8"'}

_env = Environment(autoescape=True)

_LAYOUT = _env.from_string(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} - Demo app</title>
</head>
<body>
<header><p><a href="/">Demo app</a></p></header>
<main>
<h1>{{ title }}</h1>
{{ body }}
</main>
</body>
</html>
"""
)

_HOME = _env.from_string(
    """{% if remote_user is not none %}
<p id="remote-user">Proxy says: Remote-User = {{ remote_user }}</p>
{% endif %}
{% if user %}
<p>Signed in as {{ user }}</p>
<ul>
<li><a href="/reports">Reports</a></li>
<li><a href="/account/password">Change password</a> (a sensitive page: asks for a fresh code)</li>
<li><a href="/_2fa/settings">Two-factor authentication settings</a></li>
</ul>
<form method="post" action="/logout"><button type="submit">Sign out</button></form>
{% else %}
<p>You are not signed in.</p>
<p><a href="/login">Sign in</a></p>
<p><a href="/password/reset">Forgot your password?</a></p>
{% endif %}
"""
)

_LOGIN = _env.from_string(
    """{% if error %}
<p role="alert" id="error"><strong>{{ error }}</strong></p>
{% endif %}
<form method="post" action="/login">
<input type="hidden" name="next" value="{{ next }}">
<p><label for="username">Username</label><br>
<input id="username" name="username" type="text" autocomplete="username" required
 autocapitalize="none" spellcheck="false" value="{{ username }}"></p>
<p><label for="password">Password</label><br>
<input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
<p>Demo accounts: alice, bob and carol; the password is the name followed by
<code>-password</code>.</p>
"""
)

_RESET = _env.from_string(
    """{% if sent %}
<p id="reset-sent">If an account exists for {{ email }}, we sent it a link to reset the password.
(This is a demo: no e-mail leaves it.)</p>
{% else %}
<form method="post" action="/password/reset">
<p><label for="email">E-mail address</label><br>
<input id="email" name="email" type="email" autocomplete="email" required></p>
<p><button type="submit">Send reset link</button></p>
</form>
{% endif %}
<p><a href="/login">Back to sign in</a></p>
"""
)

_PASSWORD = _env.from_string(
    """<p>Signed in as {{ user }}</p>
<p id="sensitive">Here you would change your password (a demo: nothing changes).</p>
<p><a href="/">Back home</a></p>
"""
)

_REPORTS = _env.from_string(
    """<p>Signed in as {{ user }}</p>
<table>
<caption>Quarterly figures (made up)</caption>
<thead><tr><th scope="col">Quarter</th><th scope="col">Revenue</th></tr></thead>
<tbody>
<tr><td>Q1</td><td>1,000</td></tr>
<tr><td>Q2</td><td>1,250</td></tr>
<tr><td>Q3</td><td>1,100</td></tr>
</tbody>
</table>
<p><a href="/">Back home</a></p>
"""
)


@dataclass
class SessionStore:
    """Server-side sessions: opaque random token -> username."""

    tokens: dict[str, str] = field(default_factory=dict)

    def create(self, username: str) -> str:
        token = secrets.token_urlsafe(32)
        self.tokens[token] = username
        return token

    def lookup(self, token: str | None) -> str | None:
        return self.tokens.get(token) if token else None

    def delete(self, token: str | None) -> None:
        if token:
            self.tokens.pop(token, None)


def check_password(username: str, password: str) -> bool:
    """Whether the credentials match a demo user (in constant time per comparison)."""
    entry = DEMO_USERS.get(username)
    expected = entry[0] if entry else secrets.token_urlsafe(16)
    matches = hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8"))
    return entry is not None and matches


def safe_next(target: str | None) -> str:
    """Return ``target`` if it is a local path (``/x``, not ``//x`` nor with a backslash)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return "/"
    return target


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """Decode an ``Authorization: Basic`` header into (username, password), if well formed."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64, not ASCII or not UTF-8 (binascii.Error is one too)
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def _page(title: str, template: Template, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` (autoescaped) inside the common layout."""
    body = Markup(template.render(**context))
    html = _LAYOUT.render(title=title, body=body)
    return HTMLResponse(html, status_code=status_code, headers=_NO_STORE)


def _user_json(username: str) -> dict[str, Any]:
    _, email, name = DEMO_USERS[username]
    return {"user": username, "email": email, "name": name, "groups": DEMO_GROUPS[username]}


def _form_str(form: Any, key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else ""


class DemoApp:
    """Route handlers bound to one in-memory session store."""

    def __init__(self, session_cookie: str = SESSION_COOKIE) -> None:
        self.sessions = SessionStore()
        self.reset_requests: list[str] = []  # e-mail addresses a reset link was "sent" to
        self.cookie = session_cookie

    def cookie_user(self, request: Request) -> str | None:
        return self.sessions.lookup(request.cookies.get(self.cookie))

    def api_user(self, request: Request) -> str | None:
        """The user from the session cookie, else from valid Basic credentials."""
        user = self.cookie_user(request)
        if user is not None:
            return user
        credentials = basic_credentials(request)
        if credentials and check_password(*credentials):
            return credentials[0]
        return None

    async def home(self, request: Request) -> Response:
        return _page(
            "Home",
            _HOME,
            user=self.cookie_user(request),
            remote_user=request.headers.get("remote-user"),
        )

    async def login_form(self, request: Request) -> Response:
        next_url = safe_next(request.query_params.get("next"))
        return _page("Sign in", _LOGIN, next=next_url, username="", error=None)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        username = _form_str(form, "username").strip()
        password = _form_str(form, "password")
        next_url = safe_next(_form_str(form, "next"))
        if not check_password(username, password):
            error = "Wrong username or password. Please try again."
            return _page(
                "Sign in", _LOGIN, status_code=401, next=next_url, username=username, error=error
            )
        old_token = request.cookies.get(self.cookie)
        self.sessions.delete(old_token)
        token = self.sessions.create(username)
        response = RedirectResponse(next_url, status_code=303, headers=_NO_STORE)
        response.set_cookie(self.cookie, token, path="/", httponly=True, samesite="lax")
        return response

    async def logout(self, request: Request) -> Response:
        self.sessions.delete(request.cookies.get(self.cookie))
        response = RedirectResponse("/login", status_code=303, headers=_NO_STORE)
        response.delete_cookie(self.cookie, path="/", httponly=True, samesite="lax")
        return response

    async def reports(self, request: Request) -> Response:
        user = self.cookie_user(request)
        if user is None:
            return RedirectResponse("/login?next=/reports", status_code=303)
        return _page("Reports", _REPORTS, user=user)

    async def reset_form(self, request: Request) -> Response:
        return _page("Reset your password", _RESET, sent=False)

    async def reset(self, request: Request) -> Response:
        email = _form_str(await request.form(), "email").strip().lower()
        if email:
            self.reset_requests.append(email)
        return _page("Reset your password", _RESET, sent=True, email=email)

    async def password(self, request: Request) -> Response:
        user = self.cookie_user(request)
        if user is None:
            return RedirectResponse("/login?next=/account/password", status_code=303)
        return _page("Change password", _PASSWORD, user=user)

    async def api_me(self, request: Request) -> Response:
        user = self.api_user(request)
        if user is None:
            return JSONResponse({"error": "unauthorized"}, 401, headers=_UNAUTHORIZED_HEADERS)
        return JSONResponse(_user_json(user), headers=_NO_STORE)

    async def api_data(self, request: Request) -> Response:
        user = self.api_user(request)
        if user is None:
            return JSONResponse({"error": "unauthorized"}, 401, headers=_UNAUTHORIZED_HEADERS)
        payload = {"ok": True, "user": user, "remote_user": request.headers.get("remote-user")}
        return JSONResponse(payload, headers=_NO_STORE)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")


def create_demo_app(session_cookie: str | None = None) -> Starlette:
    """Build the demo app; each call has its own (empty) session store. Its session cookie is
    ``session_cookie``, else ``$DEMO_SESSION_COOKIE``, else ``demo_session``."""
    demo = DemoApp(session_cookie or os.environ.get(SESSION_COOKIE_ENV) or SESSION_COOKIE)
    routes = [
        Route("/", demo.home, methods=["GET"]),
        Route("/login", demo.login_form, methods=["GET"]),
        Route("/login", demo.login, methods=["POST"]),
        Route("/logout", demo.logout, methods=["GET", "POST"]),
        Route("/reports", demo.reports, methods=["GET"]),
        Route("/password/reset", demo.reset_form, methods=["GET"]),
        Route("/password/reset", demo.reset, methods=["POST"]),
        Route("/account/password", demo.password, methods=["GET"]),
        Route("/api/me", demo.api_me, methods=["GET"]),
        Route("/api/data", demo.api_data, methods=["GET"]),
        Route("/healthz", demo.healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.demo = demo
    return app
