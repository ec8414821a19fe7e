"""The set-up page (``{prefix}/enroll``): a new secret as a QR code and a key, confirmed by a code.

A pending secret is bound to the app session that asked for it (the keyed fingerprint of its
cookies): another session of the same user (an attacker who knows the password) gets its own
secret and can neither see nor confirm it. Where the app session has no cookie (an
authenticator in front that sets none), set-up is bound to a random cookie of this browser
(``totp_sidecar_enroll``, on the set-up page only). It uses the page helpers of ``Pages``
(visit, form, render), as the reset gate does.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import segno
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.accounts import Check
from sidecar.core import policy, totp
from sidecar.core.request import ENROLL_COOKIE
from sidecar.web.codes import CodesPage
from sidecar.web.i18n import gettext as _
from sidecar.web.render import Visit

if TYPE_CHECKING:
    from sidecar.web.pages import Pages
    from sidecar.wiring import Parts


class EnrollPage:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.parts: Parts = pages.parts
        self.cookies = pages.cookies
        self.prefix = self.parts.config.prefix

    def routes(self) -> list[Route]:
        return [Route(self.prefix + "/enroll", self.enroll, methods=["GET", "POST"])]

    async def enroll(self, request: Request) -> Response:
        pages = self.pages
        visit = await pages.visit(request)
        if visit.identity is None:
            return pages.signed_out(visit)
        parts = self.parts
        rd = pages.rd(visit, request.query_params.get("rd"), "")
        if visit.enrolled:  # an app beside security keys only, from a verified session
            if not visit.verified:
                return pages.go(f"{self.prefix}/challenge?{urlencode({'rd': rd or '/'})}")
            if (await parts.accounts.user(visit.user)).secret is not None:
                return pages.go(rd or self.prefix + "/settings")
            if not pages.recently_confirmed(visit):  # another way to sign in: prove one first
                return pages.confirm_first(self.prefix + "/enroll")
        session, nonce = self.binding(visit)
        error = ""
        status = 200
        if request.method == "POST":
            fields = await pages.form(visit)
            if isinstance(fields, Response):
                return fields
            rd = pages.rd(visit, fields.get("rd"), "")
            result, codes, generation = await parts.accounts.complete_enrollment(
                visit.user, fields.get("code", ""), visit.client, session=session,
                expect=visit.expect)
            parts.metrics.checked("enroll_" + result.check.value)
            if result.check is Check.OK:
                response = (CodesPage(pages).hand_over(visit, codes, rd, "enabled") if codes else
                            pages.go(f"{self.prefix}/settings?notice=app_added"))
                response.headers.append("set-cookie", pages.pass_cookie(visit, generation))
                return response
            error = pages.check_message(result)
            status = 429 if result.check is Check.LOCKED else 400
        secret = await parts.accounts.pending_secret(visit.user, session=session)
        uri = totp.provisioning_uri(secret, visit.account, parts.config.totp.issuer,
                                    parts.accounts.params)
        # omitsize: a viewBox instead of a fixed size, so the stylesheet scales the whole code
        qr = segno.make(uri, error="m").svg_inline(scale=5, border=4, omitsize=True, dark="#111",
                                                   light="#fff",
                                                   title=_("QR code for your authenticator app"))
        required = bool(rd) and (await parts.decision.evaluate(
            visit.reading, pages.target(visit, rd), visit.resolved)).outcome is policy.Outcome.ENROLL
        response = pages.render(visit, "enroll.html", status, qr=qr, account=visit.account,
                                required=required, uri=uri,
                                key=totp.grouped(secret), error=error, rd=rd,
                                period=parts.config.totp.period, digits=parts.config.totp.digits)
        if nonce:
            response.headers.append("set-cookie", self.cookies.set_enroll_nonce(nonce, visit.scheme))
        return response

    def binding(self, visit: Visit) -> tuple[str, str]:
        """What a pending secret is bound to: the app session, else (an authenticator that
        sets no cookie) a random value this browser keeps for the set-up. The second item is
        that value when a cookie must be set for it."""
        passes = self.parts.passes
        if visit.reading.session_key:
            return passes.fingerprint(visit.reading.session_key), ""
        kept = visit.reading.cookie(ENROLL_COOKIE)
        if len(kept) == 32 and kept.isalnum():
            return passes.fingerprint(f"{ENROLL_COOKIE}={kept}"), ""
        nonce = secrets.token_hex(16)
        return passes.fingerprint(f"{ENROLL_COOKIE}={nonce}"), nonce
