"""The ASGI application: a lean dispatcher for the forward-auth endpoints, Starlette for pages."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sidecar import logs
from sidecar.config import Config
from sidecar.errors import Ambiguous, BadForwardedRequest, StorageUnavailable, Unavailable
from sidecar.metrics import CONTENT_TYPE
from sidecar.web.authz import Dialect, ForwardAuth, json_error
from sidecar.web.codes import CodesPage
from sidecar.web.cookies import Cookies
from sidecar.web.enroll import EnrollPage
from sidecar.web.headers import Receive, Scope, SecurityHeaders, Send, content_security_policy
from sidecar.web.i18n import LanguageMiddleware
from sidecar.web.i18n import gettext as _
from sidecar.web.keyforms import KeyForms
from sidecar.web.pages import Pages
from sidecar.web.reset import ResetGate
from sidecar.web.signout import SignOutPage
from sidecar.wiring import Parts, build_parts

log = logging.getLogger("sidecar")
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
UNKNOWN_HOST_PATH = "/_totp_sidecar_unknown_host"  # no route: the top-level site's 404 page


class Site:
    """One app's forward-auth answers and pages (its resolver, door, rules, issuer, branding);
    the top-level app's site also answers the probes and owns the lifespan."""

    def __init__(self, parts: Parts, reset_client: httpx.AsyncClient | None = None,
                 top: SidecarApp | None = None) -> None:
        self.parts = parts
        cookies = Cookies(parts.config)
        self.forward_auth = ForwardAuth(parts, cookies)
        pages = Pages(parts, cookies)
        self.pages = pages
        # Each app's own gate (password_reset is never inherited), forwarding to its app_url.
        self.reset = (ResetGate(pages, reset_client if top is not None else None)
                      if parts.config.password_reset.paths else None)
        probes = ([Route("/healthz", top.healthz), Route("/readyz", top.readyz),
                   Route("/metrics", top.metrics)] if top is not None else [])
        self.starlette = Starlette(
            routes=[*probes, *pages.routes(),
                    *EnrollPage(pages).routes(), *CodesPage(pages).routes(),
                    *SignOutPage(pages).routes(), *KeyForms(pages).routes(),
                    *(self.reset.routes() if self.reset else [])],
            exception_handlers={404: self.not_found, 405: self.not_allowed,
                                Unavailable: self.unavailable,
                                Ambiguous: self.ambiguous,
                                BadForwardedRequest: self.bad_request},
            lifespan=top.lifespan if top is not None else None,
        )
        config = parts.config
        self.pages_app = SecurityHeaders(
            LanguageMiddleware(self.starlette, config.languages.enabled, config.languages.default),
            content_security_policy(config.allowed_redirect_hosts, config.branding.logo_url))

    async def ambiguous(self, request: Request, exc: Exception) -> Response:
        """A request real apps could read in two ways (see ``sidecar.core.request``): never served."""
        log.warning("ambiguous page request refused: %s", exc)
        response = self.message(request, 401, _("This request cannot be read safely"),
                                _("Your browser sent its cookies or headers in a way that could name "
                                  "two different accounts. Sign out of the app, sign in again, and "
                                  "retry."))
        response.headers["x-totp-error"] = "ambiguous_request"
        return response

    async def bad_request(self, request: Request, exc: Exception) -> Response:
        log.warning("bad page request: %s", exc)
        return self.message(request, 400, _("Bad request"),
                            _("The address of this request could not be read."))

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.message(request, 404, _("Page not found"),
                            _("There is no page at this address. Check the link, or go back to "
                              "the app."))

    async def not_allowed(self, request: Request, exc: Exception) -> Response:
        response = self.message(request, 405, _("This page cannot do that"),
                                _("The page was opened in a way it does not support. Go back and "
                                  "try again from the page itself."))
        response.headers.update(getattr(exc, "headers", None) or {})  # Allow
        return response

    def message(self, request: Request, status: int, title: str, text: str) -> Response:
        return self.pages.templates.TemplateResponse(
            request, "message.html", {"title": title, "text": text, "link": "", "identity": None},
            status_code=status)

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        log.error("page unavailable: %s", exc)
        if isinstance(exc, StorageUnavailable):
            self.parts.metrics.storage_error()
        return self.pages.templates.TemplateResponse(
            request, "message.html", {
                "title": _("Two-factor authentication is unavailable"),
                "text": _("The service that checks codes cannot reach its data right now. Nothing "
                          "was changed. Please try again in a minute."),
                "link": "", "identity": None},
            status_code=503)


class SidecarApp:
    """The ASGI entry point: ``/auth/*`` handled directly, everything else by Starlette; with
    several apps, each request goes to the site of the app its host belongs to."""

    def __init__(self, parts: Parts, reset_client: httpx.AsyncClient | None = None) -> None:
        self.parts = parts
        self.apps = parts.apps if len(parts.apps) else None
        top = Site(parts, reset_client, self)
        self.sites = {parts.app: top}
        for other in parts.apps:
            if other.app not in self.sites:
                self.sites[other.app] = Site(other, None)
        self.forward_auth = top.forward_auth
        self.pages = top.pages
        self.reset = top.reset
        self.starlette = top.starlette
        self.pages_app = top.pages_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.apps is None or len(self.sites) == 1:
            site: Site | None = self.sites[self.parts.app]
        else:
            site = self._site(scope)
            if site is None:
                await self._unknown_host(scope, receive, send)
                return
        assert site is not None
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/auth/nginx":
                await site.forward_auth(scope, send, Dialect.NGINX)
                return
            if path == "/auth/forward":
                await site.forward_auth(scope, send, Dialect.FORWARD)
                return
        await site.pages_app(scope, receive, send)

    def _site(self, scope: Scope) -> Site | None:
        """The site of the request's app (``Apps.for_request`` chooses); the probes always
        answer on the top-level app's."""
        assert self.apps is not None
        path = scope["path"]
        if path in PROBES:
            return self.sites[self.parts.app]
        kind = {"/auth/nginx": "nginx", "/auth/forward": "forward"}.get(path, "page")
        parts = self.apps.for_request(scope, kind)
        return self.sites[parts.app] if parts is not None else None

    async def _unknown_host(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A host no app claims: refused (fail closed), never served as some other app."""
        log.warning("request for a host no app claims refused (path %s)", scope["path"][:80])
        if scope["path"].startswith("/auth/"):
            await json_error(400, "unknown_host", "no app of this sidecar answers this host"
                             ).send(send)
            return
        await self.sites[self.parts.app].pages_app(
            {**scope, "path": UNKNOWN_HOST_PATH, "raw_path": UNKNOWN_HOST_PATH.encode()},
            receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.parts.open()
        log.info("sidecar ready", extra={"event": "started"})
        try:
            yield
        finally:
            for site in self.sites.values():
                if site.reset is not None:
                    await site.reset.aclose()
            await self.parts.aclose()

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        try:
            await self.parts.storage.ping()
        except StorageUnavailable:
            self.parts.metrics.storage_error()
            return PlainTextResponse("storage unavailable", status_code=503)
        return PlainTextResponse("ready")

    async def metrics(self, request: Request) -> Response:
        with contextlib.suppress(StorageUnavailable):  # the gauge keeps its last value
            await self.parts.metrics.refresh_enrolled(self.parts.storage.count_enrolled)
        states = self.parts.accounts.states
        sizes = dict(self.parts.accounts.cache_sizes())
        for site in self.sites.values():  # every app's answer cache, added up
            for name, (size, limit) in site.forward_auth.cache_sizes().items():
                held, most = sizes.get(name, (0, 0))
                sizes[name] = (held + size, most + limit)
        self.parts.metrics.caches(sizes, states.healthy(), states.drops)
        return Response(self.parts.metrics.render(), media_type=CONTENT_TYPE)


def create_app(config: Config, reset_client: httpx.AsyncClient | None = None,
               **replaced: Any) -> SidecarApp:
    """The app for ``config``; ``replaced`` parts (storage, resolver, clock) go to ``build_parts``."""
    return SidecarApp(build_parts(config, **replaced), reset_client)


def app_from_environment() -> SidecarApp:
    """The app of a worker process started by ``serve --workers N`` (config path in the env)."""
    import os

    from sidecar.app_env import CONFIG_ENV
    from sidecar.config import load_config

    config = load_config(os.environ[CONFIG_ENV])
    logs.configure(config.server.log_level)
    return create_app(config)
