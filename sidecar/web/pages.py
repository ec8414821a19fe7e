"""The sidecar's own pages under the prefix: challenge, settings, disable (with the helpers of
``enroll``, ``codes``, ``keyforms``, ``signout``).

Each handler reads the request through the one door (``parts.door``), asks the one decision
(``parts.decision.evaluate``: who the app says is logged in now, whether this app session passed 2FA,
what the target's strictest rule wants) and renders a template. Every POST carries a CSRF
token bound to the user and the primary session, comes from the same site (``Origin`` and
``Sec-Fetch-Site`` when the browser sends them), and holds each field once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sidecar.accounts import Check, CheckResult
from sidecar.branding import brand_css
from sidecar.core import policy
from sidecar.core.forwarded import page_origin, safe_redirect
from sidecar.core.policy import Target
from sidecar.core.tokens import CSRF, Signer
from sidecar.errors import Ambiguous
from sidecar.storage import UserState
from sidecar.web.cookies import Cookies
from sidecar.web.i18n import gettext as _
from sidecar.web.i18n import lazy_gettext as _l
from sidecar.web.keys import KEY_NOTICES, KeyViews, choose_mode
from sidecar.web.render import (
    CODES_NOTICES,
    Visit,
    attempts_left,
    local_time,
    lockout_message,
    lockout_words,
    make_templates,
    moment,
    templates_dir,
)
from sidecar.wiring import Parts

LOW_RECOVERY_CODES = 3
#: how long a proved second factor lets this session add another way to sign in
CONFIRM_SECONDS = 15 * 60
MAX_FIELD = 512  # characters in one form field; longer is refused
MAX_ANSWER = 16_384  # a security key's answer (``credential``, ``assertion``: JSON)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NOTICES = {
    "enabled": _l("Two-factor authentication is enabled."),
    "disabled": _l("Two-factor authentication is turned off. You can turn it on again at any time."),
    "codes": _l("New recovery codes are ready. The old ones no longer work."),
    "devices": _l("Forgotten: those devices will ask for a code again at the next sign-in."),
    **KEY_NOTICES,
}


class Pages:
    def __init__(self, parts: Parts, cookies: Cookies) -> None:
        self.parts = parts
        config = parts.config
        self.cookies = cookies
        self.csrf_signer = Signer(parts.config.signing_keys, CSRF)
        self.prefix = config.prefix
        accent = config.branding.accent_color
        self.brand_css = brand_css(accent) if accent else ""
        self.templates = make_templates(config, bool(self.brand_css))
        self.keys = KeyViews(parts)

    def routes(self) -> list[Route | Mount]:
        p = self.prefix
        return [
            Route(p, self.home), Route(p + "/", self.home),
            Route(p + "/challenge", self.challenge, methods=["GET", "POST"]),
            Route(p + "/settings", self.settings),
            Route(p + "/disable", self.disable, methods=["POST"]),
            Route(p + "/devices", self.forget_devices, methods=["POST"]),
            Route(p + "/static/brand.css", self.brand_stylesheet),  # before the static Mount
            Mount(p + "/static", StaticFiles(directory=str(templates_dir() / "static")),
                  name="static"),
        ]

    # -- helpers ------------------------------------------------------------------------
    async def visit(self, request: Request) -> Visit:
        """Read the request (Ambiguous and BadForwardedRequest go to the app's handlers)."""
        parts = self.parts
        reading = parts.door.read(request.scope)
        forwarded = reading.headers.forwarded()
        scheme, host = page_origin(forwarded, reading.trusted, request.url.scheme)
        # the sidecar's own pages never reach the app: a POST here logs nobody into its
        # session, so it marks nothing (``Logins``) and the who-am-I answer stays usable
        resolved = await parts.decision.resolve(reading)
        verdict = (await parts.decision.evaluate(reading, None, resolved)
                   if resolved.identity is not None else None)
        return Visit(request, reading, scheme, host, resolved, verdict)

    def rd(self, visit: Visit, value: str | None, fallback: str = "/") -> str:
        allowed = self.parts.config.allowed_redirect_hosts
        return safe_redirect(value, visit.scheme, visit.host, allowed, fallback)

    def render(self, visit: Visit, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("identity", visit.identity)
        if visit.identity is not None:
            context.setdefault("csrf", self.csrf(visit))
        return self.templates.TemplateResponse(visit.request, name, context, status_code=status)

    def go(self, location: str, cookie: str | None = None) -> Response:
        response = RedirectResponse(location, status_code=303)
        if cookie is not None:
            response.headers.append("set-cookie", cookie)
        return response

    async def form(self, visit: Visit) -> dict[str, str] | Response:
        """The POSTed fields, or a 403 page when the CSRF token is missing or foreign, or the
        browser says the form came from another site.

        A field sent twice is never guessed at: a repeated ``code`` fails (counted as a failed
        attempt), another repeated or over-long field is dropped. An accepted POST keeps the
        user's e-mail (from the app) for notices, before the action whose notice needs it.
        """
        data = await visit.request.form(max_files=0, max_fields=20)
        fields: dict[str, str] = {}
        repeated: set[str] = set()
        for key, value in data.multi_items():
            if not isinstance(value, str):
                continue
            if key in fields:
                repeated.add(key)
            limit = MAX_ANSWER if key in ("credential", "assertion") else MAX_FIELD
            fields[key] = value if len(value) <= limit else "\x00"
        for key in repeated:
            fields[key] = "\x00" if key == "code" else ""
        if visit.identity is None or not self.same_site(visit) or not self.csrf_ok(
                visit, fields.get("csrf", "")):
            return self.render(visit, "message.html", 403, title=_("This form has expired"),
                               text=_("Reload the page and try again."),
                               link=self.prefix + "/settings")
        await self.parts.accounts.remember_contact(visit.user, visit.identity.email)
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
        """A new 2FA pass for this app session, as its Set-Cookie line."""
        value = self.parts.passes.issue(visit.user, visit.reading.session_key, generation)
        return self.cookies.set_pass(value, visit.scheme)

    def csrf(self, visit: Visit) -> str:
        """The page's CSRF token, bound to the user and the app session (stable within it)."""
        return self.csrf_signer.mac(visit.user, self.parts.passes.fingerprint(visit.reading.session_key))

    def csrf_ok(self, visit: Visit, token: str) -> bool:
        return self.csrf_signer.mac_valid(token, visit.user,
                                          self.parts.passes.fingerprint(visit.reading.session_key))

    def target(self, visit: Visit, rd: str, method: str = "GET") -> Target:
        """What ``rd`` (a safe, checked target) asks for, as the rules see it."""
        parts = urlsplit(rd)
        method = method.upper() if method.upper() in HTTP_METHODS else "GET"
        return Target(parts.netloc or visit.host, parts.path or "/", method)

    def recently_confirmed(self, visit: Visit) -> bool:
        """Whether this app session proved a factor in the last ``CONFIRM_SECONDS`` (a session a
        remembered device vouched for has not): adding a way to sign in asks for it (sudo)."""
        item = visit.verdict.item if visit.verdict is not None else None
        return item is not None and item.code_at > 0 and \
            self.parts.clock() - item.code_at < CONFIRM_SECONDS

    def confirm_first(self, rd: str) -> Response:  # "Confirm access", then back to rd
        return self.go(f"{self.prefix}/challenge?" + urlencode({"rd": rd, "confirm": "1"}))

    def is_own_page(self, visit: Visit, rd: str) -> bool:
        """Whether ``rd`` is one of the sidecar's pages on this host (``{prefix}/...``)."""
        parts = urlsplit(rd)
        return (not parts.netloc or parts.netloc.lower() == visit.host.lower()) and \
            (parts.path == self.prefix or parts.path.startswith(self.prefix + "/"))

    def check_message(self, result: CheckResult, recovery: bool = False, typed: str = "") -> str:
        recovery = recovery or any(c.isalpha() for c in typed)  # letters: a recovery code meant
        if result.check is Check.LOCKED:
            return lockout_message(result.locked_until, self.parts.clock())
        if result.check is Check.REPLAYED:
            text = _("This code was just used. Wait for the next one in your app.")
        elif recovery:
            text = _("That recovery code is not valid or was used already. Check it and try again.")
        else:
            text = _("That code is not valid. Check your authenticator app and try again.")
        more = attempts_left(result.failures, self.parts.config.throttle.max_failures)
        return f"{text} {more}" if more else text

    # -- pages --------------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        return RedirectResponse(self.prefix + "/settings", status_code=303)

    async def brand_stylesheet(self, request: Request) -> Response:
        """branding.accent_color as CSS custom properties (inline styles are not allowed)."""
        return Response(self.brand_css or "/* no branding.accent_color */\n", media_type="text/css")

    async def challenge(self, request: Request) -> Response:
        visit = await self.visit(request)
        if visit.identity is None:
            return self.signed_out(visit)
        parts = self.parts
        source: Any = request.query_params
        if request.method == "POST":
            source = await self.form(visit)
            if isinstance(source, Response):
                return source
        rd = self.rd(visit, source.get("rd"))
        method = source.get("m", "GET")
        # "Confirm access" before adding a way to sign in: asked even of a verified session
        confirm = source.get("confirm") == "1" and visit.enrolled and self.is_own_page(visit, rd) \
            and not self.recently_confirmed(visit)
        verdict = await parts.decision.evaluate(visit.reading, self.target(visit, rd, method), visit.resolved)
        outcome = verdict.outcome
        if outcome is policy.Outcome.ENROLL:
            # a proxy that sends every 401 here (ingress-nginx auth-signin) still reaches set-up
            return self.go(f"{self.prefix}/enroll?{urlencode({'rd': rd})}")
        if outcome is policy.Outcome.DENY:
            return self.render(visit, "message.html", 403, title=_("Access denied"),
                               text=_("This page is not available to your account."), link="/")
        # the sidecar's own pages (settings, codes) are open to the app's rules but need a code
        own_page = visit.enrolled and not visit.verified and self.is_own_page(visit, rd)
        if outcome is policy.Outcome.ALLOW and (request.method == "GET" or verdict.verified) \
                and not own_page and not confirm:
            cookie = (self.cookies.set_pass(verdict.new_pass, visit.scheme)
                      if verdict.new_pass and request.method == "GET" else None)
            return self.go(rd, cookie)
        step_up = outcome is policy.Outcome.STEP_UP
        user = await parts.accounts.user(visit.user)
        if not user.enrolled:
            return self.go(rd)
        keys_elsewhere = bool(await parts.passkeys.keys(visit.user))  # a host name's, not an IP's
        has_keys = keys_elsewhere and self.keys.usable(visit)
        asked = source.get("mode", source.get("method", "")) or ("totp" if source.get("code") else "")
        mode = choose_mode(asked, user.secret is not None, has_keys)
        error = ""
        status = 200
        if request.method == "POST":
            if mode == "key":
                result, error = await self.keys.check(visit, source.get("assertion", ""))
            else:
                result = await parts.accounts.check(visit.user, source.get("code", ""), visit.client)
                parts.metrics.checked(result.check.value)
            if result.check is Check.OK:
                fresh = await parts.accounts.user(visit.user)
                cookie = self.pass_cookie(visit, fresh.generation)
                if result.used_recovery and result.recovery_left <= LOW_RECOVERY_CODES:
                    response = self.go(
                        f"{self.prefix}/settings?{urlencode({'rd': rd, 'low': 1})}", cookie)
                else:
                    response = self.go(rd, cookie)
                if source.get("remember") == "1" and parts.devices is not None and not step_up \
                        and not confirm:
                    value = await parts.devices.remember(
                        visit.user, fresh.generation, visit.reading.headers.text("user-agent"),
                        int(parts.clock()))
                    response.headers.append("set-cookie",
                                            self.cookies.set_device(value, visit.scheme))
                return response
            error = error or self.check_message(result, mode == "recovery", source.get("code", ""))
            status = 429 if result.check is Check.LOCKED else 400
            locked_until = result.locked_until if result.check is Check.LOCKED else 0
        else:
            locked_until = user.locked_until if user.locked_until > parts.clock() else 0
        locked = moment(locked_until) if locked_until else None
        if locked:
            error = lockout_words(locked_until, parts.clock())
        switch = {"rd": rd} | ({"why": "step_up", "m": method} if step_up else {}) | (
            {"confirm": "1"} if confirm else {})
        ways = await self.keys.challenge_context(visit, user, mode, has_keys, switch)
        return self.render(visit, "challenge.html", status, hide_settings_link=True, rd=rd, **ways,
                           locked=locked, keys_elsewhere=keys_elsewhere and not has_keys,
                           mode=mode, error=error, step_up=step_up, method=method,
                           step_up_minutes=-(-verdict.rule.step_up // 60), confirm=confirm,
                           confirm_minutes=CONFIRM_SECONDS // 60,
                           digits=parts.config.totp.digits,
                           remember_days=(parts.config.remember_device.max_days
                                          if parts.devices is not None and not step_up
                                          and not confirm else 0))

    async def settings(self, request: Request) -> Response:
        visit = await self.visit(request)
        if visit.identity is None:
            return self.signed_out(visit)
        user = await self.parts.accounts.user(visit.user)
        query = request.query_params
        if visit.enrolled and not visit.verified:
            return self.go(f"{self.prefix}/challenge?" + urlencode({"rd": f"{self.prefix}/settings"}))
        rd = self.rd(visit, query.get("rd"), "")
        low = bool(query.get("low")) and user.enrolled and user.recovery_left <= LOW_RECOVERY_CODES
        notice = query.get("notice", "")
        unsaved = notice in CODES_NOTICES and query.get("saved") != "1" and user.enrolled
        response = await self.settings_page(visit, 200, user, rd=rd, low=low, unsaved=unsaved,
                                            notice="" if unsaved else NOTICES.get(notice, ""))
        if notice in CODES_NOTICES:  # the codes were shown: Back does not show them again
            response.headers.append("set-cookie", self.cookies.clear_codes(visit.scheme))
        return response

    async def settings_page(self, visit: Visit, status: int, user: UserState | None = None,
                            **context: Any) -> Response:
        """The settings page: 2FA's state, the security keys, remembered devices, turning off."""
        user = user or await self.parts.accounts.user(visit.user)
        context = {"notice": "", "rd": "", "low": False} | context
        confirmed = not user.enrolled or self.recently_confirmed(visit)
        return self.render(visit, "settings.html", status, user=user,
                           since=local_time(user.enabled_at), confirmed=confirmed,
                           devices=await self.device_list(visit),
                           **await self.keys.settings_context(visit, user, confirmed), **context)

    async def device_list(self, visit: Visit) -> list[dict[str, str | Markup]]:
        """The user's remembered devices for the settings page (this one marked)."""
        if self.parts.devices is None:
            return []
        own = self.parts.devices.device_id(
            visit.reading.cookie(self.parts.config.remember_device.cookie_name))
        return [{"id": d.device_id, "browser": d.browser, "created": local_time(d.created_at),
                 "seen": local_time(d.last_seen), "this": "1" if d.device_id == own else ""}
                for d in await self.parts.storage.devices(visit.user)]

    async def forget_devices(self, request: Request) -> Response:
        """POST: forget one remembered device (``device``) or all (``device=all``)."""
        visit = await self.visit(request)
        if visit.identity is None:
            return self.signed_out(visit)
        fields = await self.form(visit)
        if isinstance(fields, Response):
            return fields
        if not visit.verified or self.parts.devices is None:
            return self.go(f"{self.prefix}/settings")
        which = fields.get("device", "")
        count = await self.parts.devices.forget(visit.user, None if which == "all" else which)
        await self.parts.accounts.audit("devices_forgotten", visit.user, visit.client, count=count)
        return self.go(f"{self.prefix}/settings?notice=devices")

    async def confirmed(self, visit: Visit,
                        ticked: str = "") -> tuple[dict[str, str], CheckResult, str] | Response:
        """A POST from a verified session and its confirmation's check (a code, a recovery
        code or a security key), or the response to give; ``ticked``: the form (``disable``)
        whose confirmation box must be ticked first."""
        if visit.identity is None:
            return self.signed_out(visit)
        fields = await self.form(visit)
        if isinstance(fields, Response):
            return fields
        if not visit.verified:
            return self.go(f"{self.prefix}/challenge?"
                           + urlencode({"rd": f"{self.prefix}/settings"}))
        if ticked and fields.get("confirm") != "1":  # nothing compared, no code used
            return await self.settings_page(visit, 400, form_error=ticked,
                                            error_text=_("Tick the box to confirm, then try again."))
        result, text = await self.confirm_check(visit, fields)
        return fields, result, text

    async def confirm_check(self, visit: Visit, fields: dict[str, str],
                            recovery: bool = False) -> tuple[CheckResult, str]:
        """A settings confirmation: a security key's answer (``assertion``), else the ``code``
        (an authentication code or a recovery code); the result and its error text."""
        if fields.get("assertion"):
            return await self.keys.check(visit, fields["assertion"])
        code = fields.get("code", "")
        result = await self.parts.accounts.check(visit.user, code, visit.client)
        self.parts.metrics.checked(result.check.value)
        return result, self.check_message(result, recovery, code)

    async def disable(self, request: Request) -> Response:
        visit = await self.visit(request)
        outcome = await self.confirmed(visit, ticked="disable")
        if isinstance(outcome, Response):
            return outcome
        _, result, text = outcome
        if result.check is Check.OK:
            await self.parts.accounts.disable(visit.user, client=visit.client)
            return self.go(f"{self.prefix}/settings?notice=disabled",
                           self.cookies.clear_pass(visit.scheme))
        return await self.settings_error(visit, result, "disable", text)

    async def settings_error(self, visit: Visit, result: CheckResult, form: str,
                             text: str) -> Response:
        status = 429 if result.check is Check.LOCKED else 400
        return await self.settings_page(visit, status, form_error=form, error_text=text)
