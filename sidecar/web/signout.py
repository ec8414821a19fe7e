""""Not you? Sign out" (``POST {prefix}/signout``): the way out of the code prompt, the
step-up prompt and required set-up; and ``{prefix}/logout``, which ends the 2FA cookie only.

The sidecar ends its own cookies (the 2FA pass, the remembered device, set-up's and the
reset gate's), expires the app's session cookies (``primary.session_cookies``, ``Path=/``)
in this browser, and sends the user to the app's link-style logout (``primary.logout_url``)
when there is one, else to its login page (``primary.login_url``). Both are reachable
without a code (implicit ``bypass`` rules, see ``sidecar.wiring.implicit_rules``). The POST
carries the page's CSRF token like every other form; with nobody logged in there is no
token to check, so only a same-site POST is accepted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.web.i18n import gettext as _

if TYPE_CHECKING:
    from sidecar.web.pages import Pages


class SignOutPage:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.config = pages.parts.config

    def routes(self) -> list[Route]:
        prefix = self.config.prefix
        return [Route(prefix + "/signout", self.sign_out, methods=["POST"]),
                Route(prefix + "/logout", self.logout, methods=["GET", "POST"])]

    def destination(self) -> str:
        primary = self.config.primary
        return primary.logout_url or primary.login_url or "/"

    async def sign_out(self, request: Request) -> Response:
        pages = self.pages
        visit = await pages.visit(request)
        if visit.identity is not None:
            fields = await pages.form(visit)
            if isinstance(fields, Response):
                return fields
        elif not pages.same_site(visit):
            return pages.render(visit, "message.html", 403, title=_("This form has expired"),
                                text=_("Reload the page and try again."), link="/")
        response = pages.go(self.destination())
        for line in pages.cookies.sign_out_lines(visit.scheme):
            response.headers.append("set-cookie", line)
        return response

    async def logout(self, request: Request) -> Response:
        """GET: a one-button confirmation; POST (with CSRF): the 2FA cookie ends.

        The 2FA cookie also dies with the app session it is bound to, so a GET that signs
        out (a link another site could embed) is never needed.
        """
        pages = self.pages
        visit = await pages.visit(request)
        if request.method == "GET":
            return pages.render(visit, "logout.html",
                                rd=pages.rd(visit, request.query_params.get("rd")))
        if visit.identity is not None:
            fields = await pages.form(visit)
            if isinstance(fields, Response):
                return fields
            rd = pages.rd(visit, fields.get("rd"))
        else:
            rd = "/"
        return pages.go(rd, pages.cookies.clear_pass(visit.scheme))
