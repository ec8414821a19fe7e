"""The sidecar's own pages under the prefix: challenge, enroll, settings, disable, logout.

Each handler reads the request through the one door (``Sidecar.read``), asks the one decision
(``Sidecar.evaluate``: who the app says is logged in now, whether this app session passed 2FA,
what the target's strictest rule wants) and renders a template. Every POST carries a CSRF
token bound to the user and the primary session, comes from the same site (``Origin`` and
``Sec-Fetch-Site`` when the browser sends them), and holds each field once.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import segno
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from sidecar import policy, totp
from sidecar.branding import brand_css, support_link
from sidecar.context import ENROLL_COOKIE, Sidecar, Target, Verdict, cookie_line
from sidecar.forwarded import page_origin, safe_redirect
from sidecar.i18n import gettext as _
from sidecar.i18n import install as install_i18n
from sidecar.i18n import lazy_gettext as _l
from sidecar.i18n import ngettext, preload
from sidecar.primary import Identity, Resolved
from sidecar.request import Ambiguous, Reading
from sidecar.service import Check, CheckResult

LOW_RECOVERY_CODES = 3
MAX_FIELD = 512  # characters in one form field; longer is refused
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NOTICES = {
    "enabled": _l("Two-factor authentication is enabled."),
    "disabled": _l("Two-factor authentication is turned off. You can turn it on again at any time."),
    "codes": _l("New recovery codes are ready. The old ones no longer work."),
    "devices": _l("Forgotten: those devices will ask for a code again at the next sign-in."),
}


def templates_dir() -> Path:
    """Templates ship inside the package when installed, beside it in a checkout."""
    inside = Path(__file__).parent / "templates"
    return inside if inside.is_dir() else Path(__file__).parent.parent / "templates"


@dataclass
class Visit:
    """A page request: its one reading, where it was sent, who is logged in, the page verdict."""

    request: Request
    reading: Reading
    scheme: str
    host: str
    resolved: Resolved
    verdict: Verdict | None  # for the sidecar's own pages (None: nobody is logged in)

    @property
    def identity(self) -> Identity | None:
        return self.resolved.identity

    @property
    def client(self) -> str:
        return self.reading.client

    @property
    def user(self) -> str:
        return self.identity.user if self.identity else ""

    @property
    def verified(self) -> bool:
        """This app session passed 2FA for the user the app says is logged in now."""
        return self.verdict is not None and self.verdict.verified

    @property
    def enrolled(self) -> bool:
        return self.verdict is not None and self.verdict.enrolled

    @property
    def account(self) -> str:
        """The name shown in the authenticator app: e-mail when known, else the user id."""
        if self.identity is None:
            return ""
        return self.identity.email or self.identity.user


def when(timestamp: int | None) -> str:
    if not timestamp:
        return ""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def lockout_message(locked_until: float, now: float) -> str:
    """"Try again in 14 minutes (after 10:25 UTC)": the time left and the moment it ends."""
    minutes = max(1, -int((now - locked_until) // 60))  # rounded up
    end = dt.datetime.fromtimestamp(locked_until, dt.UTC)
    same_day = end.date() == dt.datetime.fromtimestamp(now, dt.UTC).date()
    moment = end.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")
    return ngettext("Too many attempts. Try again in %(num)s minute (after %(time)s), or ask your "
                    "administrator to unlock your account.",
                    "Too many attempts. Try again in %(num)s minutes (after %(time)s), or ask your "
                    "administrator to unlock your account.", minutes, time=moment)


class Pages:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sc = sidecar
        self.prefix = sidecar.config.prefix
        self.templates = Jinja2Templates(directory=str(templates_dir()))
        brand = sidecar.config.branding
        preload(sidecar.config.languages.enabled)
        install_i18n(self.templates.env)
        self.brand_css = brand_css(brand.accent_color) if brand.accent_color else ""
        self.templates.env.globals.update(
            prefix=self.prefix, issuer=sidecar.config.totp.issuer, digits=sidecar.config.totp.digits,
            product_name=brand.product_name or sidecar.config.totp.issuer, logo=brand.logo,
            brand_css=bool(self.brand_css), support=sidecar.config.support_contact,
            support_href=support_link(sidecar.config.support_contact))

    def routes(self) -> list[Route | Mount]:
        p = self.prefix
        return [
            Route(p, self.home), Route(p + "/", self.home),
            Route(p + "/challenge", self.challenge, methods=["GET", "POST"]),
            Route(p + "/enroll", self.enroll, methods=["GET", "POST"]),
            Route(p + "/settings", self.settings),
            Route(p + "/disable", self.disable, methods=["POST"]),
            Route(p + "/recovery-codes", self.recovery_codes, methods=["POST"]),
            Route(p + "/logout", self.logout, methods=["GET", "POST"]),
            Route(p + "/devices", self.forget_devices, methods=["POST"]),
            Route(p + "/static/brand.css", self.brand_stylesheet),  # before the static Mount
            Mount(p + "/static", StaticFiles(directory=str(templates_dir() / "static")),
                  name="static"),
        ]

    # -- helpers ------------------------------------------------------------------------
    async def visit(self, request: Request) -> Visit:
        """Read the request (Ambiguous and BadForwardedRequest go to the app's handlers)."""
        sc = self.sc
        reading = sc.read(request.scope)
        forwarded = reading.headers.forwarded()
        scheme, host = page_origin(forwarded, reading.trusted, request.url.scheme)
        resolved = await sc.resolve(reading, request.method)
        verdict = (await sc.evaluate(reading, None, resolved)
                   if resolved.identity is not None else None)
        return Visit(request, reading, scheme, host, resolved, verdict)

    def rd(self, visit: Visit, value: str | None, fallback: str = "/") -> str:
        return safe_redirect(value, visit.scheme, visit.host, self.sc.config.allowed_redirect_hosts,
                             fallback)

    def render(self, visit: Visit, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("identity", visit.identity)
        if visit.identity is not None:
            context.setdefault("csrf", self.sc.csrf(visit.user, visit.reading))
        return self.templates.TemplateResponse(visit.request, name, context, status_code=status)

    def go(self, location: str, cookie: str | None = None) -> Response:
        response = RedirectResponse(location, status_code=303)
        if cookie is not None:
            response.headers.append("set-cookie", cookie)
        return response

    async def form(self, visit: Visit) -> dict[str, str] | Response:
        """The POSTed fields, or a 403 page when the CSRF token is missing or foreign, or the
        browser says the form came from another site.

        A field sent twice is never guessed at: a repeated ``code`` becomes a code that fails
        (and counts as a failed attempt), any other repeated or over-long field is dropped.
        Every accepted POST also keeps the user's e-mail (from the app) for notices, before
        the action whose notice may need it.
        """
        data = await visit.request.form(max_files=0, max_fields=20)
        fields: dict[str, str] = {}
        repeated: set[str] = set()
        for key, value in data.multi_items():
            if not isinstance(value, str):
                continue
            if key in fields:
                repeated.add(key)
            fields[key] = value if len(value) <= MAX_FIELD else "\x00"
        for key in repeated:
            fields[key] = "\x00" if key == "code" else ""
        if visit.identity is None or not self.same_site(visit) or not self.sc.csrf_ok(
                visit.user, visit.reading, fields.get("csrf", "")):
            return self.render(visit, "message.html", 403, title=_("This form has expired"),
                               text=_("Reload the page and try again."),
                               link=self.prefix + "/settings")
        await self.sc.service.remember_contact(visit.user, visit.identity.email)
        return fields

    def same_site(self, visit: Visit) -> bool:
        """False when the browser says the POST came from another site (Origin, Sec-Fetch-Site)."""
        headers = visit.reading.headers
        try:
            fetch_site = headers.single("sec-fetch-site").strip().lower()
            origin = headers.single("origin").strip().lower()
        except Ambiguous:
            return False
        if fetch_site:  # a header pages cannot forge: the browser's own word
            return fetch_site in ("same-origin", "none")
        return not origin or origin == f"{visit.scheme}://{visit.host}".lower()

    def signed_out(self, visit: Visit) -> Response:
        return self.render(visit, "message.html", 401, title=_("Sign in first"),
                           text=_("Sign in to the app, then come back to this page."),
                           link=self.rd(visit, visit.request.query_params.get("rd")))

    def pass_cookie(self, visit: Visit, generation: int) -> str:
        assert visit.identity is not None
        value = self.sc.new_pass(visit.identity, visit.reading, generation)
        return self.sc.set_cookie(value, self.sc.secure(visit.scheme))

    def target(self, visit: Visit, rd: str, method: str = "GET") -> Target:
        """What ``rd`` (a safe, checked target) asks for, as the rules see it."""
        parts = urlsplit(rd)
        method = method.upper() if method.upper() in HTTP_METHODS else "GET"
        return Target(parts.netloc or visit.host, parts.path or "/", method)

    def check_message(self, result: CheckResult, recovery: bool = False) -> str:
        if result.check is Check.LOCKED:
            return lockout_message(result.locked_until, self.sc.clock())
        if recovery:
            return _("That recovery code is not valid or was used already. Check it and try again.")
        return _("That code is not valid. Check your authenticator app and try again.")

    # -- pages --------------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        return RedirectResponse(self.prefix + "/settings", status_code=303)

    async def brand_stylesheet(self, request: Request) -> Response:
        """branding.accent_color as CSS custom properties (inline styles are not allowed)."""
        if not self.brand_css:
            return Response("/* no branding.accent_color */\n", media_type="text/css")
        return Response(self.brand_css, media_type="text/css")

    async def challenge(self, request: Request) -> Response:
        visit = await self.visit(request)
        if visit.identity is None:
            return self.signed_out(visit)
        sc = self.sc
        source: Any = request.query_params
        if request.method == "POST":
            source = await self.form(visit)
            if isinstance(source, Response):
                return source
        rd = self.rd(visit, source.get("rd"))
        mode = "recovery" if source.get("mode", source.get("method")) == "recovery" else "totp"
        method = source.get("m", "GET")
        verdict = await sc.evaluate(visit.reading, self.target(visit, rd, method), visit.resolved)
        outcome = verdict.outcome
        if outcome is policy.Outcome.ENROLL:
            # a proxy that sends every 401 here (ingress-nginx auth-signin) still reaches set-up
            return self.go(f"{self.prefix}/enroll?{urlencode({'rd': rd})}")
        if outcome is policy.Outcome.DENY:
            return self.render(visit, "message.html", 403, title=_("Access denied"),
                               text=_("This page is not available to your account."), link="/")
        if outcome is policy.Outcome.ALLOW and (request.method == "GET" or verdict.verified):
            cookie = (sc.set_cookie(verdict.new_pass, sc.secure(visit.scheme))
                      if verdict.new_pass and request.method == "GET" else None)
            return self.go(rd, cookie)
        step_up = outcome is policy.Outcome.STEP_UP
        user = await sc.service.user(visit.user)
        if not user.enrolled:
            return self.go(rd)
        error = ""
        status = 200
        if request.method == "POST":
            result = await sc.service.check(visit.user, source.get("code", ""), visit.client)
            sc.metrics.checked(result.check.value)
            if result.check is Check.OK:
                fresh = await sc.service.user(visit.user)
                cookie = self.pass_cookie(visit, fresh.generation)
                if result.used_recovery and result.recovery_left <= LOW_RECOVERY_CODES:
                    response = self.go(
                        f"{self.prefix}/settings?{urlencode({'rd': rd, 'low': 1})}", cookie)
                else:
                    response = self.go(rd, cookie)
                if source.get("remember") == "1" and sc.devices is not None and not step_up:
                    value = await sc.devices.remember(
                        visit.user, fresh.generation, visit.reading.headers.text("user-agent"),
                        int(sc.clock()))
                    response.headers.append("set-cookie", sc.device_cookie(
                        value, sc.secure(visit.scheme)))
                return response
            error = self.check_message(result, recovery=mode == "recovery")
            status = 429 if result.check is Check.LOCKED else 400
        elif user.locked_until > sc.clock():
            error = self.check_message(CheckResult(Check.LOCKED, locked_until=user.locked_until))
        switch = {"rd": rd, "method": "totp" if mode == "recovery" else "recovery"}
        if step_up:
            switch |= {"why": "step_up", "m": method}
        return self.render(visit, "challenge.html", status, hide_settings_link=True, rd=rd,
                           mode=mode, error=error, step_up=step_up, method=method,
                           digits=sc.config.totp.digits,
                           remember_days=(sc.config.remember_device.max_days
                                          if sc.devices is not None and not step_up else 0),
                           switch_url=f"{self.prefix}/challenge?" + urlencode(switch))

    async def enroll(self, request: Request) -> Response:
        visit = await self.visit(request)
        if visit.identity is None:
            return self.signed_out(visit)
        sc = self.sc
        rd = self.rd(visit, request.query_params.get("rd"), "")
        if visit.enrolled:
            if not visit.verified:
                return self.go(f"{self.prefix}/challenge?{urlencode({'rd': rd or '/'})}")
            return self.go(rd or self.prefix + "/settings")
        session, nonce = self.enrollment_binding(visit)
        error = ""
        status = 200
        if request.method == "POST":
            fields = await self.form(visit)
            if isinstance(fields, Response):
                return fields
            rd = self.rd(visit, fields.get("rd"), "")
            result, codes, generation = await sc.service.complete_enrollment(
                visit.user, fields.get("code", ""), visit.client, session=session)
            sc.metrics.checked("enroll_" + result.check.value)
            if result.check is Check.OK:
                response = self.codes_page(visit, codes, rd, "enabled")
                response.headers.append("set-cookie", self.pass_cookie(visit, generation))
                return response
            error = self.check_message(result)
            status = 429 if result.check is Check.LOCKED else 400
        secret = await sc.service.pending_secret(visit.user, session=session)
        uri = totp.provisioning_uri(secret, visit.account, sc.config.totp.issuer,
                                    sc.service.params)
        # omitsize: a viewBox instead of a fixed size, so the stylesheet scales the whole code
        qr = segno.make(uri, error="m").svg_inline(scale=5, border=4, omitsize=True, dark="#111",
                                                   light="#fff",
                                                   title=_("QR code for your authenticator app"))
        response = self.render(visit, "enroll.html", status, qr=qr, account=visit.account,
                               key=totp.grouped(secret), error=error, rd=rd,
                               period=sc.config.totp.period, digits=sc.config.totp.digits)
        if nonce:
            response.headers.append("set-cookie", cookie_line(
                ENROLL_COOKIE, nonce, sc.config.totp.enrollment_timeout, sc.secure(visit.scheme),
                path=f"{self.prefix}/enroll", same_site="Strict"))
        return response

    def enrollment_binding(self, visit: Visit) -> tuple[str, str]:
        """What a pending secret is bound to: the app session, else (an authenticator that
        sets no cookie) a random value this browser keeps for the set-up. The second item is
        that value when a cookie must be set for it."""
        if visit.reading.session_key:
            return self.sc.fingerprint(visit.reading), ""
        kept = visit.reading.cookie(ENROLL_COOKIE)
        if len(kept) == 32 and kept.isalnum():
            return self.sc.fingerprint_of(f"{ENROLL_COOKIE}={kept}"), ""
        nonce = secrets.token_hex(16)
        return self.sc.fingerprint_of(f"{ENROLL_COOKIE}={nonce}"), nonce

    def codes_page(self, visit: Visit, codes: list[str], rd: str, notice: str) -> Response:
        query = {"notice": notice} | ({"rd": rd} if rd else {})
        issued = when(int(self.sc.clock()))
        issuer = self.sc.config.totp.issuer
        text = "\n".join([_("%(issuer)s recovery codes", issuer=issuer),
                          _("Account: %(account)s", account=visit.account),
                          _("Created: %(date)s", date=issued), "",
                          _("Each code works once. Keep them somewhere safe."), "", *codes, ""])
        return self.render(visit, "recovery_codes.html", codes=codes, account=visit.account,
                           download="data:text/plain;charset=utf-8," + quote(text),
                           filename=f"{self.sc.config.totp.issuer}-recovery-codes.txt",
                           complete=f"{self.prefix}/settings?{urlencode(query)}", issued=issued)

    async def settings(self, request: Request) -> Response:
        visit = await self.visit(request)
        if visit.identity is None:
            return self.signed_out(visit)
        user = await self.sc.service.user(visit.user)
        query = request.query_params
        if visit.enrolled and not visit.verified:
            here = f"{self.prefix}/settings"
            return self.go(f"{self.prefix}/challenge?{urlencode({'rd': here})}")
        rd = self.rd(visit, query.get("rd"), "")
        low = bool(query.get("low")) and user.enrolled and user.recovery_left <= LOW_RECOVERY_CODES
        return self.render(visit, "settings.html", user=user, since=when(user.enabled_at),
                           notice=NOTICES.get(query.get("notice", ""), ""), rd=rd, low=low,
                           devices=await self.device_list(visit))

    async def device_list(self, visit: Visit) -> list[dict[str, str]]:
        """The user's remembered devices for the settings page (this one marked)."""
        if self.sc.devices is None:
            return []
        own = self.sc.devices.device_id(
            visit.reading.cookie(self.sc.config.remember_device.cookie_name))
        return [{"id": d.device_id, "browser": d.browser, "created": when(d.created_at),
                 "seen": when(d.last_seen), "this": "1" if d.device_id == own else ""}
                for d in await self.sc.storage.devices(visit.user)]

    async def forget_devices(self, request: Request) -> Response:
        """POST: forget one remembered device (``device``) or all (``device=all``)."""
        visit = await self.visit(request)
        if visit.identity is None:
            return self.signed_out(visit)
        fields = await self.form(visit)
        if isinstance(fields, Response):
            return fields
        if not visit.verified or self.sc.devices is None:
            return self.go(f"{self.prefix}/settings")
        which = fields.get("device", "")
        count = await self.sc.devices.forget(visit.user, None if which == "all" else which)
        await self.sc.service.audit("devices_forgotten", visit.user, visit.client, count=count)
        return self.go(f"{self.prefix}/settings?notice=devices")

    async def _confirmed(self, visit: Visit) -> tuple[dict[str, str], CheckResult] | Response:
        """A POST from a verified session whose code checks out, or the response to give."""
        if visit.identity is None:
            return self.signed_out(visit)
        fields = await self.form(visit)
        if isinstance(fields, Response):
            return fields
        if not visit.verified:
            return self.go(f"{self.prefix}/challenge?"
                           + urlencode({"rd": f"{self.prefix}/settings"}))
        result = await self.sc.service.check(visit.user, fields.get("code", ""), visit.client)
        self.sc.metrics.checked(result.check.value)
        return fields, result

    async def disable(self, request: Request) -> Response:
        visit = await self.visit(request)
        outcome = await self._confirmed(visit)
        if isinstance(outcome, Response):
            return outcome
        _, result = outcome
        if result.check is Check.OK:
            await self.sc.service.disable(visit.user, client=visit.client)
            return self.go(f"{self.prefix}/settings?notice=disabled",
                           self.sc.clear_cookie(self.sc.secure(visit.scheme)))
        return await self.settings_error(visit, result, "disable")

    async def recovery_codes(self, request: Request) -> Response:
        visit = await self.visit(request)
        outcome = await self._confirmed(visit)
        if isinstance(outcome, Response):
            return outcome
        _, result = outcome
        if result.check is Check.OK:
            codes = await self.sc.service.new_recovery_codes(visit.user, visit.client)
            return self.codes_page(visit, codes, "", "codes")
        return await self.settings_error(visit, result, "codes")

    async def settings_error(self, visit: Visit, result: CheckResult, form: str) -> Response:
        user = await self.sc.service.user(visit.user)
        status = 429 if result.check is Check.LOCKED else 400
        return self.render(visit, "settings.html", status, user=user, since=when(user.enabled_at),
                           notice="", rd="", low=False, form_error=form,
                           devices=await self.device_list(visit),
                           error_text=self.check_message(result))

    async def logout(self, request: Request) -> Response:
        """GET: a one-button confirmation; POST (with CSRF): the 2FA cookie ends.

        The 2FA cookie also dies with the app session it is bound to, so a GET that signs
        out (a link another site could embed) is never needed.
        """
        visit = await self.visit(request)
        if request.method == "GET":
            return self.render(visit, "logout.html", rd=self.rd(visit, request.query_params.get("rd")))
        if visit.identity is not None:
            fields = await self.form(visit)
            if isinstance(fields, Response):
                return fields
            rd = self.rd(visit, fields.get("rd"))
        else:
            rd = "/"
        return self.go(rd, self.sc.clear_cookie(self.sc.secure(visit.scheme)))
