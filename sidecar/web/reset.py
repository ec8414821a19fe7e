"""The password-reset gate: a code before the app's "forgot password" page, for that account only.

The proxy sends the app's reset path(s) (``password_reset.paths``) to the sidecar, which
serves them by forwarding to the app (``password_reset.app_url``) once the visitor holds a
*grant*: a short-lived signed cookie carrying a random grant id and the account that passed
the gate. The gate page (``{prefix}/reset``) asks for the account and, when a user it names
has 2FA on, that user's code (TOTP or recovery; throttled in the ``reset`` scope, so failures
here close the gate for that account but never lock the user's own sign-in).

Accounts are matched the way storage can mean them: ``users_for_account`` names every user
whose id, or e-mail address, equals the text in any case; when it names several, the gate
refuses (ambiguous). The reset form's POST is forwarded with its body unchanged only when its
one account field equals the granted account (stripped, in any case: so each user it could
mean was checked) and the grant is used for the first time (``use_grant``: once, in storage,
whatever cookie is replayed). A field sent twice, or an account in the query string other than
the granted one, is refused and nothing is forwarded.

By default an account without 2FA passes with the account alone, which tells a visitor that
this account has no 2FA. With ``always_ask`` the gate asks every account for a code and
answers every submission the same way (on to the reset page); a wrong code then yields a
grant that the app never sees, so nothing reveals which accounts have 2FA.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sidecar.accounts import Check
from sidecar.config import ResetConfig
from sidecar.core.apps import DEFAULT_APP, in_namespace
from sidecar.core.forwarded import page_origin
from sidecar.core.request import RESET_GRANT_COOKIE as GRANT_COOKIE
from sidecar.core.request import RESET_NONCE_COOKIE as NONCE_COOKIE
from sidecar.core.tokens import RESET_CSRF, RESET_GRANT, Signer
from sidecar.errors import Ambiguous
from sidecar.storage import RESET
from sidecar.web.i18n import gettext as _

if TYPE_CHECKING:
    from sidecar.web.pages import Pages
    from sidecar.web.render import Visit
    from sidecar.wiring import Parts

log = logging.getLogger("sidecar.reset")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer",
              "proxy-authorization", "proxy-authenticate", "host", "content-length"}
MAX_BODY = 64 * 1024
MAX_ACCOUNT = 256
ACCOUNT_FIELD = "account"  # the gate form's own field
SINGLE_FIELDS = ("code", "csrf")  # never sent twice in a forwarded form either


def normalize_account(text: str) -> str:
    """The account text as the gate keeps it: stripped, its case kept (user ids are exact)."""
    return text.strip()


def account_key(text: str) -> str:
    """How accounts compare: stripped and lower-cased, as ``users_for_account`` matches them."""
    return normalize_account(text).lower()


def repeated(items: Iterable[tuple[str, str]], names: Iterable[str] | None = None) -> bool:
    """Whether a field (of ``names``, or any) is given more than once."""
    counts = Counter(key for key, _ in items)
    return any(counts[name] > 1 for name in (counts if names is None else names))


@dataclass(frozen=True, slots=True)
class Grant:
    """A grant cookie's content: its id (used once, in storage), the account, the gate's verdict."""

    grant_id: str
    account: str
    ok: bool


class ResetGate:
    def __init__(self, pages: Pages, client: httpx.AsyncClient | None = None) -> None:
        self.pages = pages
        self.parts: Parts = pages.parts
        self.cookies = pages.cookies
        self.settings: ResetConfig = self.parts.config.password_reset
        keys = self.parts.config.signing_keys
        # A grant or form of one app is worth nothing at another's gate (the same account
        # may be another person there); the top-level app keeps the plain names.
        app = "" if self.parts.app == DEFAULT_APP else f":{self.parts.app}"
        self.grants = Signer(keys, RESET_GRANT + app, max_length=1024)
        self.csrf = Signer(keys, RESET_CSRF + app)
        self.client = client or httpx.AsyncClient(timeout=10, follow_redirects=False)

    def routes(self) -> list[Route]:
        prefix = self.parts.config.prefix
        return [Route(prefix + "/reset", self.gate, methods=["GET", "POST"]),
                *[Route(path, self.forward, methods=["GET", "POST"]) for path in self.settings.paths]]

    # -- the gate page ------------------------------------------------------------------
    def _cookie(self, request: Request, name: str) -> str:
        """One of the gate's own cookies, from the one reading of the request (ambiguous: 401)."""
        reading = self.parts.door.read(request.scope)
        if reading.problem:
            raise Ambiguous(reading.problem)
        return reading.cookie(name)

    def _scheme(self, request: Request) -> str:
        """The scheme the browser used (from a trusted proxy's X-Forwarded-Proto)."""
        reading = self.parts.door.read(request.scope)
        return page_origin(reading.headers.forwarded(), reading.trusted, request.url.scheme)[0]

    def _nonce(self, request: Request) -> tuple[str, bool]:
        """The anonymous visitor's CSRF nonce (a cookie), and whether it is new."""
        nonce = self._cookie(request, NONCE_COOKIE)
        if len(nonce) == 32 and nonce.isalnum():
            return nonce, False
        return secrets.token_hex(16), True


    async def gate(self, request: Request) -> Response:
        visit = await self.pages.visit(request)
        nonce, fresh = self._nonce(request)
        rd = self.pages.rd(visit, request.query_params.get("rd"),
                           self.settings.paths[0] if self.settings.paths else "/")
        if not self._query_account_ok(request, self._grant(request)):
            return self._refuse_query(visit, rd)
        context: dict[str, Any] = {"rd": rd, "account": "", "ask_code": self.settings.always_ask,
                                   "error": "", "reset_csrf": self.csrf.mac(nonce)}
        status = 200
        if request.method == "POST":
            answer = await self._posted(visit, request, nonce, fresh, context)
            if isinstance(answer, Response):
                return answer
            status = answer
        response = self.pages.render(visit, "reset.html", status, **context)
        if fresh:
            response.headers.append("set-cookie", self.cookies.set_reset_nonce(nonce, visit.scheme))
        return response

    async def _posted(self, visit: Visit, request: Request, nonce: str, fresh: bool,
                      context: dict[str, Any]) -> Response | int:
        """The answer to the gate form: a response, or the status of the page re-shown."""
        form = await request.form(max_files=0, max_fields=10)
        items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        if repeated(items):
            return self._refuse_repeated(visit, context["rd"])
        fields = dict(items)
        if fresh or not self.pages.same_site(visit) or not self.csrf.mac_valid(
                fields.get("csrf", ""), nonce):
            return self.pages.render(visit, "message.html", 403, title=_("This form has expired"),
                                     text=_("Reload the page and try again."), link=context["rd"])
        rd = self.pages.rd(visit, fields.get("rd"), context["rd"])
        account = normalize_account(fields.get(ACCOUNT_FIELD, ""))
        context.update(rd=rd, account=account)
        if not account or len(account) > MAX_ACCOUNT:
            context.update(account=account[:MAX_ACCOUNT],
                           error=_("Enter the account whose password you want to reset."))
            return 400
        users = [key for key in await self.parts.storage.users_for_account(account)
                 if in_namespace(key, self.parts.namespace)]  # this app's users only
        if len(users) > 1:
            log.warning("password reset refused: the account names %d users", len(users))
            context["error"] = _("This name fits more than one account, so its password cannot be "
                                 "reset here. Ask your administrator for help.")
            return 400
        outcome = await self._decide(users[0] if users else None, fields, visit.client)
        if outcome is None:
            context["ask_code"] = True  # this account has 2FA: ask for its code
            return 200
        if isinstance(outcome, str):
            context.update(error=outcome, ask_code=True)
            return 400
        granted = RedirectResponse(rd, status_code=303)
        granted.headers.append("set-cookie", self.cookies.set_reset_grant(
            await self._issue(account, outcome), visit.scheme))
        return granted

    async def _decide(self, user: str | None, fields: dict[str, str],
                      client: str) -> bool | str | None:
        """True/False: grant (ok or not); a message: ask again; None: ask for the code first."""
        enrolled = user is not None and (await self.parts.accounts.user(user)).enrolled
        code = fields.get("code", "").strip()
        if not enrolled:
            return True  # nothing to check; with always_ask the answer looks the same
        assert user is not None
        if not code:
            return _("Enter a code from your authenticator app or a recovery code.") \
                if self.settings.always_ask or "code" in fields else None
        result = await self.parts.accounts.check(user, code, client, scope=RESET)
        if result.check is Check.OK:
            await self.parts.accounts.audit("reset_gate_passed", user, client)
            return True
        if self.settings.always_ask:
            return False  # same answer as a success: the app never sees this grant
        return self.pages.check_message(result)

    async def _issue(self, account: str, ok: bool) -> str:
        """A new grant, kept in storage (to be used once), signed: the grant cookie's value."""
        now = int(self.parts.clock())
        until = now + self.settings.grant_seconds
        grant_id = secrets.token_urlsafe(24)
        await self.parts.storage.add_grant(grant_id, account, until, now)
        return self.grants.dumps(grant_id, account, ok, until)

    def _grant(self, request: Request) -> Grant | None:
        fields = self.grants.loads(self._cookie(request, GRANT_COOKIE), str, str, bool, int)
        if fields is None:
            return None
        grant_id, account, ok, until = fields
        return Grant(grant_id, account, ok) if until > self.parts.clock() else None

    def _query_account_ok(self, request: Request, grant: Grant | None) -> bool:
        """No account in the query string, unless it is exactly the granted one."""
        for name in {ACCOUNT_FIELD, self.settings.account_field}:
            values = request.query_params.getlist(name)
            if values and (grant is None or values != [grant.account]):
                return False
        return True

    def _refuse_query(self, visit: Visit, link: str) -> Response:
        log.warning("password reset refused: an account in the query string")
        return self.pages.render(visit, "message.html", 400, title=_("This link cannot be used"),
                                 text=_("Open the password reset page without an account in its "
                                        "address, and enter the account there."), link=link)

    def _refuse_repeated(self, visit: Visit, link: str) -> Response:
        log.warning("password reset refused: a form field was sent more than once")
        return self.pages.render(visit, "message.html", 400, title=_("This form cannot be used"),
                                 text=_("A field of the form was sent more than once. Reload the "
                                        "page and try again."), link=link)

    # -- the app's reset path, forwarded ------------------------------------------------
    async def forward(self, request: Request) -> Response:
        grant = self._grant(request)
        gate = f"{self.parts.config.prefix}/reset?{urlencode({'rd': request.url.path})}"
        if grant is None:
            return RedirectResponse(gate, status_code=303)
        if not self._query_account_ok(request, grant):
            return self._refuse_query(await self.pages.visit(request), gate)
        body = await request.body()
        if request.method == "POST":
            refused = await self._refuse_post(request, body, grant, gate)
            if refused is not None:
                return refused
        upstream = await self._send(request, body)
        response = Response(upstream.content, status_code=upstream.status_code)
        for name, value in upstream.headers.multi_items():
            if name.lower() not in HOP_BY_HOP and name.lower() not in ("date", "server"):
                response.headers.append(name, value)
        if request.method == "POST":  # one reset per grant (and storage holds it to that)
            response.headers.append("set-cookie", self.cookies.clear_reset_grant(self._scheme(request)))
        return response

    async def _refuse_post(self, request: Request, body: bytes, grant: Grant,
                           gate: str) -> Response | None:
        """None when the reset form may go to the app, else the refusal.

        It may when it names the granted account, once, and the grant is used for the first time.
        """
        fields = self._submitted_fields(request, body)
        names = (self.settings.account_field, *SINGLE_FIELDS)
        if fields is not None and repeated(fields, names):
            return self._refuse_repeated(await self.pages.visit(request), gate)
        account = next((v for k, v in fields or () if k == self.settings.account_field), None)
        if account is None or account_key(account) != account_key(grant.account) or not grant.ok:
            return await self._refuse_account(request, grant, gate)
        if not await self.parts.storage.use_grant(grant.grant_id, int(self.parts.clock())):
            log.warning("password reset refused: the grant was used already")
            return self.pages.render(await self.pages.visit(request), "message.html", 403,
                                     title=_("Confirm this account again"),
                                     text=_("This confirmation was used already. Enter the "
                                            "account (and its code) once more."), link=gate)
        return None

    async def _refuse_account(self, request: Request, grant: Grant, gate: str) -> Response:
        visit = await self.pages.visit(request)
        log.warning("password reset refused: the form names another account than the gate")
        if not grant.ok:  # always_ask and a wrong code: answer like an app would
            return self.pages.render(visit, "message.html", 200, title=_("Check your e-mail"),
                                     text=_("If that account exists and the code was right, "
                                            "a message with the next steps is on its way."),
                                     link="/")
        return self.pages.render(visit, "message.html", 403, title=_("Confirm this account first"),
                                 text=_("The password of this account can only be reset "
                                        "after its code was entered."), link=gate)

    def _submitted_fields(self, request: Request, body: bytes) -> list[tuple[str, str]] | None:
        """The fields of a plain form (every one, repeats kept); None for any other body.

        Only a body every framework decodes alike is understood: one Content-Type line saying
        ``application/x-www-form-urlencoded`` (at most with ``charset=utf-8``) and an ASCII
        body. Another charset (Django decodes the form with it), a second Content-Type line
        (some servers keep the last), multipart or JSON: refused.
        """
        if len(body) > MAX_BODY or not body.isascii():
            return None
        try:
            content_type = self.parts.door.read(request.scope).headers.single("content-type")
        except Ambiguous:
            return None
        kind, *params = (part.strip().lower() for part in content_type.split(";"))
        if kind != "application/x-www-form-urlencoded":
            return None  # only plain forms are understood: anything else is refused
        if any(p not in ("", "charset=utf-8", 'charset="utf-8"') for p in params):
            return None
        try:
            return parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                             errors="strict")
        except UnicodeDecodeError:
            return None  # percent-escapes that are not UTF-8

    async def _send(self, request: Request, body: bytes) -> httpx.Response:
        # the bytes as they came (repeated lines kept): never re-encoded on the way to the app
        headers = [(k, v) for k, v in request.scope["headers"] if k.decode("latin-1") not in HOP_BY_HOP]
        headers += [(k, v) for k, v in request.scope["headers"] if k == b"host"][:1]
        url = self.settings.app_url.rstrip("/") + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        return await self.client.request(request.method, url, headers=headers, content=body)

    async def aclose(self) -> None:
        await self.client.aclose()

