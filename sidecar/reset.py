"""The password-reset gate: a code before the app's "forgot password" page, for that account only.

The proxy sends the app's reset path(s) (``password_reset.paths``) to the sidecar, which
serves them by forwarding to the app (``password_reset.app_url``) once the visitor holds a
*grant*: a short-lived signed cookie saying which account passed the gate. The gate page
(``{prefix}/reset``) asks for the account and, when that account has 2FA on, a code (TOTP or
recovery; throttled like the challenge). The reset form's POST is forwarded with its body
unchanged only when its account field names the granted account; the grant then ends.

By default an account without 2FA passes with the account alone, which tells a visitor that
this account has no 2FA. With ``always_ask`` the gate asks every account for a code and
answers every submission the same way (on to the reset page); a wrong code then yields a
grant that the app never sees, so nothing reveals which accounts have 2FA.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import httpx
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sidecar.config import ResetConfig
from sidecar.i18n import gettext as _
from sidecar.service import Check

if TYPE_CHECKING:
    from sidecar.context import Sidecar
    from sidecar.pages import Pages

log = logging.getLogger("sidecar.reset")
GRANT_SALT = "totp-sidecar.reset-grant"
NONCE_COOKIE = "totp_sidecar_reset"
GRANT_COOKIE = "totp_sidecar_reset_grant"
OWN_COOKIES = (NONCE_COOKIE, GRANT_COOKIE)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer",
              "proxy-authorization", "proxy-authenticate", "host", "content-length"}
MAX_BODY = 64 * 1024


def normalize_account(text: str) -> str:
    return text.strip().lower()[:256]


class ResetGate:
    def __init__(self, pages: Pages, client: httpx.AsyncClient | None = None) -> None:
        self.pages = pages
        self.sc: Sidecar = pages.sc
        self.settings: ResetConfig = self.sc.config.password_reset
        self.grants = URLSafeSerializer(list(self.sc.config.signing_keys), salt=GRANT_SALT)
        self.client = client or httpx.AsyncClient(timeout=10, follow_redirects=False)

    def routes(self) -> list[Route]:
        prefix = self.sc.config.prefix
        return [Route(prefix + "/reset", self.gate, methods=["GET", "POST"]),
                *[Route(path, self.forward, methods=["GET", "POST"]) for path in self.settings.paths]]

    # -- the gate page ------------------------------------------------------------------
    def _nonce(self, request: Request) -> tuple[str, bool]:
        """The anonymous visitor's CSRF nonce (a cookie), and whether it is new."""
        nonce = request.cookies.get(NONCE_COOKIE, "")
        if len(nonce) == 32 and nonce.isalnum():
            return nonce, False
        return secrets.token_hex(16), True

    def _token(self, nonce: str) -> str:
        key = self.sc.config.signing_keys[-1].encode() + b"reset-csrf"
        return hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()

    async def gate(self, request: Request) -> Response:
        visit = await self.pages.visit(request)
        nonce, fresh = self._nonce(request)
        rd = self.pages.rd(visit, request.query_params.get("rd"),
                           self.settings.paths[0] if self.settings.paths else "/")
        context: dict[str, Any] = {"rd": rd, "account": "", "ask_code": self.settings.always_ask,
                                   "error": "", "reset_csrf": self._token(nonce)}
        status = 200
        if request.method == "POST":
            form = await request.form(max_files=0, max_fields=10)
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            if fresh or not hmac.compare_digest(self._token(nonce), fields.get("csrf", "")):
                return self.pages.render(visit, "message.html", 403, title=_("This form has expired"),
                                         text=_("Reload the page and try again."), link=rd)
            rd = self.pages.rd(visit, fields.get("rd"), rd)
            account = normalize_account(fields.get("account", ""))
            context.update(rd=rd, account=account)
            if not account:
                context["error"] = _("Enter the account whose password you want to reset.")
                status = 400
            else:
                outcome = await self._decide(account, fields, visit.client)
                if outcome is None:
                    context["ask_code"] = True  # this account has 2FA: ask for its code
                elif isinstance(outcome, str):
                    context.update(error=outcome, ask_code=True)
                    status = 400
                else:
                    granted = RedirectResponse(rd, status_code=303)
                    granted.headers.append("set-cookie", self._grant_cookie(account, outcome,
                                                                            visit.scheme))
                    return granted
        response = self.pages.render(visit, "reset.html", status, **context)
        if fresh:
            response.headers.append("set-cookie", f"{NONCE_COOKIE}={nonce}; "
                                    f"Path={self.sc.config.prefix}/reset; HttpOnly; SameSite=Strict")
        return response

    async def _decide(self, account: str, fields: dict[str, str], client: str) -> bool | str | None:
        """True/False: grant (ok or not); a message: ask again; None: ask for the code first."""
        user = await self._user_for(account)
        enrolled = user is not None and (await self.sc.service.user(user)).enrolled
        code = fields.get("code", "").strip()
        if not enrolled:
            return True  # nothing to check; with always_ask the answer looks the same
        assert user is not None
        if not code:
            return _("Enter a code from your authenticator app or a recovery code.") \
                if self.settings.always_ask or "code" in fields else None
        result = await self.sc.service.check(user, code, client)
        if result.check is Check.OK:
            await self.sc.service.audit("reset_gate_passed", user, client)
            return True
        if self.settings.always_ask:
            return False  # same answer as a success: the app never sees this grant
        return self.pages.check_message(result)

    async def _user_for(self, account: str) -> str | None:
        """The sidecar user named by the account field: a user id or a known e-mail address."""
        if (await self.sc.storage.get_user(account)).enrolled:
            return account
        return await self.sc.storage.user_for_contact(account)

    def _grant_cookie(self, account: str, ok: bool, scheme: str) -> str:
        until = int(time.time()) + self.settings.grant_seconds
        value = self.grants.dumps([account, ok, until])
        parts = [f"{GRANT_COOKIE}={value}", "Path=/", f"Max-Age={self.settings.grant_seconds}",
                 "HttpOnly", "SameSite=Lax"]
        return "; ".join(parts + (["Secure"] if self.sc.secure(scheme) else []))

    def _grant(self, request: Request) -> tuple[str, bool] | None:
        value = request.cookies.get(GRANT_COOKIE, "")
        if not value or len(value) > 1024:
            return None
        try:
            account, ok, until = self.grants.loads(value)
        except (BadSignature, ValueError, TypeError):
            return None
        if not (isinstance(account, str) and isinstance(ok, bool) and isinstance(until, int)):
            return None
        return (account, ok) if until > time.time() else None

    # -- the app's reset path, forwarded ------------------------------------------------
    async def forward(self, request: Request) -> Response:
        grant = self._grant(request)
        gate = f"{self.sc.config.prefix}/reset?{urlencode({'rd': request.url.path})}"
        if grant is None:
            return RedirectResponse(gate, status_code=303)
        body = await request.body()
        if request.method == "POST":
            account = self._submitted_account(request, body)
            if account != grant[0] or not grant[1]:
                visit = await self.pages.visit(request)
                log.warning("password reset refused: the form names another account than the gate")
                if not grant[1]:  # always_ask and a wrong code: answer like an app would
                    return self.pages.render(visit, "message.html", 200,
                                             title=_("Check your e-mail"),
                                             text=_("If that account exists and the code was right, "
                                                    "a message with the next steps is on its way."),
                                             link="/")
                return self.pages.render(visit, "message.html", 403,
                                         title=_("Confirm this account first"),
                                         text=_("The password of this account can only be reset "
                                                "after its code was entered."), link=gate)
        upstream = await self._send(request, body)
        response = Response(upstream.content, status_code=upstream.status_code)
        for name, value in upstream.headers.multi_items():
            if name.lower() not in HOP_BY_HOP and name.lower() not in ("date", "server"):
                response.headers.append(name, value)
        if request.method == "POST":  # one reset per grant
            response.headers.append("set-cookie", f"{GRANT_COOKIE}=; Path=/; Max-Age=0")
        return response

    def _submitted_account(self, request: Request, body: bytes) -> str:
        if len(body) > MAX_BODY:
            return ""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return ""  # only plain forms are understood: anything else is refused
        fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return normalize_account(fields.get(self.settings.account_field, ""))

    async def _send(self, request: Request, body: bytes) -> httpx.Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        headers.append(("host", request.headers.get("host", "")))
        url = self.settings.app_url.rstrip("/") + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        return await self.client.request(request.method, url, headers=headers, content=body)

    async def aclose(self) -> None:
        await self.client.aclose()

