"""New recovery codes: made by a POST, shown by a GET (``{prefix}/recovery-codes``).

The POST that makes codes (set-up's last step, "Make new recovery codes" in settings) does not
answer with them: it seals them (AES-GCM, bound to the user and the app session) into a cookie
for the codes page only and redirects there. A reload shows them again for a quarter of an
hour; Back after "Complete" finds the cookie gone (settings ends it) and lands in settings,
never on the browser's "resubmit the form?" page, and never shows the codes to another user or
another app session.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.accounts import Check
from sidecar.core.request import CODES_COOKIE
from sidecar.errors import SecretUnreadable
from sidecar.web.cookies import CODES_SECONDS
from sidecar.web.i18n import gettext as _
from sidecar.web.render import CODES_NOTICES, Visit, slug, when

if TYPE_CHECKING:
    from sidecar.web.pages import Pages
    from sidecar.wiring import Parts

class CodesPage:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.parts: Parts = pages.parts
        self.prefix = self.parts.config.prefix

    def routes(self) -> list[Route]:
        return [Route(self.prefix + "/recovery-codes", self.show, methods=["GET"]),
                Route(self.prefix + "/recovery-codes", self.make, methods=["POST"])]

    def _bound(self, visit: Visit) -> str:
        """What the sealed codes are bound to: this user in this app session."""
        fingerprint = self.parts.passes.fingerprint(visit.reading.session_key)
        return f"recovery-codes\x00{visit.user}\x00{fingerprint}"

    def hand_over(self, visit: Visit, codes: list[str], rd: str, notice: str) -> Response:
        """The answer to a POST that made ``codes``: a redirect to the page that shows them."""
        payload = json.dumps({"codes": codes, "rd": rd, "notice": notice,
                              "at": int(self.parts.clock())})
        sealed = self.parts.accounts.box.seal(self._bound(visit), payload)
        return self.pages.go(self.prefix + "/recovery-codes",
                             self.pages.cookies.set_codes(sealed, visit.scheme))

    def _opened(self, visit: Visit) -> dict[str, object] | None:
        sealed = visit.reading.cookie(CODES_COOKIE)
        if not sealed:
            return None
        try:
            payload = json.loads(self.parts.accounts.box.open(self._bound(visit), sealed))
        except (SecretUnreadable, ValueError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("at"), int):
            return None
        if not 0 <= self.parts.clock() - payload["at"] < CODES_SECONDS:
            return None
        codes = payload.get("codes")
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            return None
        return payload

    async def make(self, request: Request) -> Response:
        """Settings' "Make new recovery codes" (a code, a recovery code or a security key first)."""
        pages = self.pages
        visit = await pages.visit(request)
        outcome = await pages.confirmed(visit)
        if isinstance(outcome, Response):
            return outcome
        _fields, result, text = outcome
        if result.check is Check.OK:
            codes = await self.parts.accounts.new_recovery_codes(visit.user, visit.client)
            return self.hand_over(visit, codes, "", "codes")
        return await pages.settings_error(visit, result, "codes", text)

    async def show(self, request: Request) -> Response:
        pages = self.pages
        visit = await pages.visit(request)
        if visit.identity is None:
            return pages.signed_out(visit)
        if visit.enrolled and not visit.verified:
            here = f"{self.prefix}/settings"
            return pages.go(f"{self.prefix}/challenge?{urlencode({'rd': here})}")
        payload = self._opened(visit)
        if payload is None:  # shown already (Back after Complete), expired, or not this session's
            return pages.go(self.prefix + "/settings",
                            pages.cookies.clear_codes(visit.scheme)
                            if visit.reading.cookie(CODES_COOKIE) else None)
        codes = [str(code) for code in payload["codes"]]  # type: ignore[attr-defined]
        notice = str(payload.get("notice", ""))
        rd = pages.rd(visit, str(payload.get("rd", "")), "")
        issued = when(int(payload["at"]))  # type: ignore[call-overload]
        issuer = self.parts.config.totp.issuer
        text = "\n".join([_("%(issuer)s recovery codes", issuer=issuer),
                          _("Account: %(account)s", account=visit.account),
                          _("Created: %(date)s", date=issued), "",
                          _("Each code works once. Keep them somewhere safe."), "", *codes, ""])
        return pages.render(visit, "recovery_codes.html", codes=codes, account=visit.account,
                            download="data:text/plain;charset=utf-8," + quote(text),
                            filename=f"{slug(issuer)}-recovery-codes.txt",
                            notice=notice if notice in CODES_NOTICES else "", rd=rd, issued=issued)

