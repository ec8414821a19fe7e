"""Path variants, differentially: the sidecar's rule for a raw path is never weaker than the rule
of the route a real framework's router sends that path to.

Routers: Starlette (``Router``, on the percent-decoded ``scope["path"]`` as uvicorn hands it
over), Werkzeug/Flask (``Map.bind().match`` on ``PATH_INFO``), Django (``URLResolver`` on
``path_info``), each also as an app that strips ``;`` path parameters per segment before
routing (what Tomcat, Jetty and Spring do) and as one that routes case-insensitively (what
Express and ASP.NET do). The table holds the path tricks that escaped rules before: ``;``
parameters, ``..;``, encoded dots and slashes, case, repeated slashes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import pytest
from starlette.routing import Match, Mount, Route, Router

from sidecar.core.policy import Level, Policy, Rule, Subject, Target

RULES = (Rule(Level.BYPASS, paths=("/login",)), Rule(Level.BYPASS, paths=("/static/",)),
         Rule(Level.REQUIRED, paths=("/reports",)), Rule(Level.DENY, paths=("/admin",)))
DEFAULT = Level.OPTIONAL
POLICY = Policy(RULES, DEFAULT)
LEVEL_OF_ROUTE = {"login": Level.BYPASS, "static": Level.BYPASS, "reports": Level.REQUIRED,
                  "admin": Level.DENY, "home": DEFAULT}

PATHS = [
    "/admin", "/ADMIN", "/Admin/", "/admin;jsessionid=x", "/admin;", "/login/../admin",
    "/login/..;/admin", "/static/..;/admin", "/static/%2e%2e/admin", "/static/%2e%2e;/admin",
    "/static/..%2fadmin", "/static/%2e%2e%2fadmin", "/login/%2e%2e%3b/admin", "/%61dmin",
    "//admin", "/./admin", "/static//../admin", "/reports;.css", "/Reports", "/REPORTS;x=1",
    "/reports%3b.css", "/login;x/../reports", "/static/x/..;/..;/reports", "/login%2f..%2freports",
    "/static/a.css", "/login", "/", "/ſtatic/..;/admin",
]


def _endpoint(request: Any) -> None:  # never called: only routing is compared
    raise AssertionError


async def _asgi(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError


def starlette_route(path: str) -> str | None:
    router = Router(routes=[Route("/", _endpoint, name="home"), Route("/login", _endpoint, name="login"),
                            Route("/reports", _endpoint, name="reports"),
                            Route("/admin", _endpoint, name="admin"),
                            Mount("/static", app=_asgi, name="static")])
    scope = {"type": "http", "path": path, "root_path": "", "method": "GET", "headers": []}
    for route in router.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "name", None))
    return None


def werkzeug_route(path: str) -> str | None:
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import Map
    from werkzeug.routing import Rule as WRule

    urls = Map([WRule("/", endpoint="home"), WRule("/login", endpoint="login"),
                WRule("/reports", endpoint="reports"), WRule("/admin", endpoint="admin"),
                WRule("/static/<path:p>", endpoint="static")], strict_slashes=False)
    try:
        endpoint, _ = urls.bind("app.test").match(path)
    except HTTPException:
        return None
    return str(endpoint)


def django_route(path: str) -> str | None:
    from django.conf import settings  # type: ignore[import-untyped]

    if not settings.configured:
        settings.configure()
    from django.urls import URLResolver, re_path  # type: ignore[import-untyped]
    from django.urls import path as dpath
    from django.urls.exceptions import Resolver404  # type: ignore[import-untyped]
    from django.urls.resolvers import RegexPattern  # type: ignore[import-untyped]

    patterns = [dpath("", _endpoint, name="home"), dpath("login", _endpoint, name="login"),
                dpath("reports", _endpoint, name="reports"), dpath("admin", _endpoint, name="admin"),
                re_path(r"^static/(?P<p>.*)$", _endpoint, name="static")]
    resolver = URLResolver(RegexPattern(r"^/"), patterns)
    try:
        return str(resolver.resolve(path).url_name)
    except Resolver404:
        return None


ROUTERS: dict[str, Callable[[str], str | None]] = {
    "starlette": starlette_route, "werkzeug": werkzeug_route, "django": django_route}


def strip_parameters(path: str) -> str:
    return "/".join(segment.split(";", 1)[0] for segment in path.split("/"))


def resolve_dots(path: str) -> str:
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment not in ("", "."):
            out.append(segment)
    return "/" + "/".join(out)


# How a backend turns the path it receives into the path its router sees.
READERS: dict[str, Callable[[str], str]] = {
    "as sent": unquote,
    "dots resolved": lambda raw: resolve_dots(unquote(raw)),
    "tomcat (;params stripped, then dots)": lambda raw: resolve_dots(unquote(strip_parameters(raw))),
    "tomcat, decoded first": lambda raw: resolve_dots(strip_parameters(unquote(raw))),
    "case-insensitive (express, asp.net)": lambda raw: resolve_dots(unquote(raw)).lower(),
    "case-insensitive tomcat": lambda raw: resolve_dots(strip_parameters(unquote(raw))).lower(),
}


def sidecar_level(raw: str) -> Level:
    return POLICY.level_for(Target("app.test", raw), Subject("alice"))


@pytest.mark.parametrize("raw", PATHS)
@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("router", list(ROUTERS))
def test_the_sidecar_is_never_weaker_than_the_route_a_framework_takes(raw: str, reader: str,
                                                                      router: str) -> None:
    routed = ROUTERS[router](READERS[reader](raw))
    if routed is None:
        return  # the app answers 404 itself: nothing of it is reached
    app_level = LEVEL_OF_ROUTE[routed]
    assert sidecar_level(raw) >= app_level, (raw, reader, router, routed)


def test_the_table_reaches_protected_routes_through_tricks() -> None:
    """The table is not vacuous: tricks do route to /admin and /reports in some framework."""
    reached = {(raw, ROUTERS[r](READERS[reader](raw))) for raw in PATHS for r in ROUTERS
               for reader in READERS}
    tricky = {raw for raw, routed in reached if routed in ("admin", "reports")
              and raw not in ("/admin", "/reports")}
    assert {"/login/..;/admin", "/admin;jsessionid=x", "/ADMIN", "/reports;.css",
            "/static/%2e%2e/admin"} <= tricky
