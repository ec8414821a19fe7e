"""The settings forms of security keys and passkeys: add one (its answer to the registration
challenge, and a name), rename one, remove one (the last factor needs a code or a recovery
code and a ticked box, as turning 2FA off does). They use the page helpers of ``Pages`` (visit,
form, render), as the set-up page does; ``sidecar.web.keys`` holds what the pages show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.accounts import Check
from sidecar.passkeys import KeyCheck
from sidecar.web.codes import CodesPage
from sidecar.web.i18n import gettext as _
from sidecar.web.render import Visit

if TYPE_CHECKING:
    from sidecar.web.pages import Pages
    from sidecar.wiring import Parts


class KeyForms:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.parts: Parts = pages.parts
        self.passkeys = self.parts.passkeys
        self.views = pages.keys
        self.prefix = self.parts.config.prefix

    def routes(self) -> list[Route]:
        p = self.prefix
        return [Route(p + "/keys/add", self.add, methods=["POST"]),
                Route(p + "/keys/rename", self.rename, methods=["POST"]),
                Route(p + "/keys/remove", self.remove, methods=["POST"])]

    async def _fields(self, visit: Visit) -> dict[str, str] | Response:
        if visit.identity is None:
            return self.pages.signed_out(visit)
        fields = await self.pages.form(visit)
        if isinstance(fields, Response):
            return fields
        if visit.enrolled and not visit.verified:
            return self.pages.go(f"{self.prefix}/challenge?"
                                 + urlencode({"rd": f"{self.prefix}/settings"}))
        return fields

    async def add(self, request: Request) -> Response:
        """POST: a new key's answer (``credential``) and its ``name``."""
        pages = self.pages
        visit = await pages.visit(request)
        fields = await self._fields(visit)
        if isinstance(fields, Response):
            return fields
        if visit.enrolled and not pages.recently_confirmed(visit):  # sudo: a factor proved lately
            return pages.confirm_first(f"{self.prefix}/settings")
        result = await self.passkeys.register(visit.user, self.views.session(visit),
                                              fields.get("credential", ""), fields.get("name", ""),
                                              self.views.rp(visit), visit.client,
                                              expect=visit.expect)
        self.parts.metrics.key_checked("register_" + result.check.value)
        if result.check is not KeyCheck.OK:
            return await pages.settings_page(visit, 400, form_error="key-add",
                                             error_text=self.views.refusal(result))
        if result.codes:  # the first factor: 2FA is on, the recovery codes shown once
            response = CodesPage(pages).hand_over(visit, list(result.codes), "", "enabled")
            response.headers.append("set-cookie", pages.pass_cookie(visit, result.generation))
            return response
        return pages.go(f"{self.prefix}/settings?notice=key_added")

    async def rename(self, request: Request) -> Response:
        visit = await self.pages.visit(request)
        fields = await self._fields(visit)
        if isinstance(fields, Response):
            return fields
        renamed = await self.passkeys.rename(visit.user, fields.get("key", ""), fields.get("name", ""))
        return self.pages.go(f"{self.prefix}/settings" + ("?notice=key_renamed" if renamed else ""))

    async def remove(self, request: Request) -> Response:
        """POST: remove a key; the last factor needs a recovery code or a key's answer, as
        turning off does."""
        pages = self.pages
        visit = await pages.visit(request)
        fields = await self._fields(visit)
        if isinstance(fields, Response):
            return fields
        key = fields.get("key", "")
        if await self.passkeys.is_last_factor(visit.user):
            if fields.get("confirm") != "1":
                return await pages.settings_page(visit, 400, form_error="key-remove",
                                                 error_text=_("Tick the box to confirm, then try "
                                                              "again."))
            result, text = await pages.confirm_check(visit, fields, recovery=True)
            if result.check is not Check.OK:
                return await pages.settings_error(visit, result, "key-remove", text)
            if not await self.passkeys.remove(visit.user, key, visit.client, confirmed=True):
                return pages.go(f"{self.prefix}/settings")
            return pages.go(f"{self.prefix}/settings?notice=disabled",
                            pages.cookies.clear_pass(visit.scheme))
        removed = await self.passkeys.remove(visit.user, key, visit.client)  # never the last
        return pages.go(f"{self.prefix}/settings" + ("?notice=key_removed" if removed else ""))
