"""The composition root: the one place where the parts of a running sidecar are chosen and joined.

``build_parts(config)`` makes each part once (storage, the app's who-am-I resolver, the
account service, passes, remembered devices, security keys, the one door, the one decision, metrics,
notices) and hands them over as ``Parts``. The web app, the command line, the benchmarks and
the tests build here and nowhere else; a test replaces a part by passing it in (a storage,
a resolver talking to an in-process app, a fixed clock).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sidecar.accounts import Accounts
from sidecar.config import AppConfig, Config, PostgresConfig
from sidecar.core.apps import DEFAULT_APP, choose_app
from sidecar.core.clock import Clock, wall
from sidecar.core.forwarded import (
    TrustedProxies,
    original_for_forward,
    original_for_nginx,
    page_origin,
)
from sidecar.core.logins import Logins
from sidecar.core.policy import Level, Policy, Rule, exact_path_rule
from sidecar.core.request import (
    CODES_COOKIE,
    ENROLL_COOKIE,
    READ_HEADERS,
    RESET_COOKIES,
    Door,
    Headers,
)
from sidecar.decision import Decision
from sidecar.devices import Devices
from sidecar.errors import BadForwardedRequest
from sidecar.metrics import Metrics
from sidecar.notify import Notifier
from sidecar.passes import Passes
from sidecar.passkeys import Passkeys
from sidecar.primary import HeaderResolver, IntrospectResolver, Resolver
from sidecar.storage import SQLiteStorage, Storage

HOST_CACHE_LIMIT = 4096


def make_storage(config: Config) -> Storage:
    """The storage the config names: a SQLite file, or a PostgreSQL database."""
    if isinstance(config.storage, PostgresConfig):
        from sidecar.storage.postgres import PostgresStorage  # asyncpg is loaded only when used

        return PostgresStorage(config.storage.dsn, config.storage.listen_dsn,
                               config.storage.pgbouncer)
    return SQLiteStorage(config.storage.path)


def describe_storage(config: Config) -> str:
    """The storage in words, without secrets: ``sqlite:/path`` or ``postgres:host:port/dbname``."""
    if isinstance(config.storage, PostgresConfig):
        from sidecar.storage.postgres import describe

        return f"postgres:{describe(config.storage.dsn)}"
    return f"sqlite:{config.storage.path}"


def make_resolver(config: Config, metrics: Metrics | None = None,
                  logins: Logins | None = None) -> Resolver:
    """Who is logged in: the app's who-am-I URL, or a trusted proxy's headers."""
    if config.primary.resolver == "header":
        return HeaderResolver(config)
    return IntrospectResolver(config, observe=metrics.whoami if metrics else None, logins=logins)


def make_door(config: Config) -> Door:
    """How requests are read: which cookies and headers matter, which peers are believed."""
    names = config.primary.header
    own = (config.cookie.name, config.remember_device.cookie_name, ENROLL_COOKIE, CODES_COOKIE,
           *RESET_COOKIES)
    return Door(own, config.primary.session_cookies,
                (names.user, names.email, names.name, names.groups)
                if config.primary.resolver == "header" else None,
                TrustedProxies(config.server.trusted_proxies).trusted)


def implicit_rules(config: Config) -> tuple[tuple[str, str, Rule], ...]:
    """The rules the sidecar adds, each with the key and URL it comes from: the app's login
    and logout pages are reachable without a code (a login at ``/`` adds none: that is the app)."""
    found: list[tuple[str, str, Rule]] = []
    for key, url in (("primary.login_url", config.primary.login_url),
                     ("primary.logout_url", config.primary.logout_url)):
        parts = urlsplit(url)
        if parts.path.rstrip("/"):
            found.append((key, url, exact_path_rule(Level.BYPASS, parts.path, parts.hostname or "")))
    return tuple(found)


def make_policy(config: Config) -> Policy:
    """The operator's rules, the default level, the sidecar's prefix, and the implicit rules."""
    return Policy(config.rules, config.default_level, config.prefix,
                  tuple(rule for _, _, rule in implicit_rules(config)))


@dataclass(frozen=True, slots=True)
class Parts:
    """The parts of one app of a running sidecar, each made once by ``build_parts``: the app's
    own settings, resolver, door, passes and decision; storage, accounts, metrics and notices
    shared by every app (``apps``; the top-level app's parts are ``apps.default``)."""

    config: Config
    clock: Clock
    storage: Storage
    resolver: Resolver
    metrics: Metrics
    notifier: Notifier
    accounts: Accounts
    passes: Passes
    devices: Devices | None
    door: Door
    decision: Decision
    passkeys: Passkeys
    app: str = DEFAULT_APP
    namespace: str = DEFAULT_APP  # the app's users_namespace (core.apps.storage_key)
    apps: Apps = field(default_factory=lambda: Apps(), repr=False, compare=False)

    async def open(self, feed: bool = True) -> None:
        """Open the database and start applying its change feed to the user states (not for
        a one-shot command: without the feed, states are read from the database each time)."""
        await self.storage.open()
        if feed:
            self.accounts.states.start()

    async def aclose(self) -> None:
        """Send the queued notices, then close every app's resolver and the database."""
        await self.accounts.states.stop()
        await self.notifier.aclose()
        for parts in self.apps or (self,):
            await parts.resolver.aclose()
        await self.storage.close()


class Apps:
    """Every app of this sidecar; ``for_request`` is the one place a request's app is chosen."""

    def __init__(self) -> None:
        self.by_name: dict[str, Parts] = {}
        self._hosts: list[tuple[str, tuple[str, ...]]] = []
        self._chosen: dict[str, Parts | None] = {}
        self._routes: dict[tuple[Any, ...], Parts | None] = {}  # a request's (hot path)

    def add(self, parts: Parts, hosts: tuple[str, ...]) -> None:
        self.by_name[parts.app] = parts
        self._hosts.append((parts.app, hosts))

    def __iter__(self) -> Iterator[Parts]:
        return iter(self.by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)

    @property
    def default(self) -> Parts:
        return self.by_name[DEFAULT_APP]

    def named(self, name: str) -> Parts:
        """The app called ``name``; KeyError when there is none."""
        return self.by_name[name]

    def choose(self, host: str) -> Parts | None:
        """The app whose ``hosts`` claim ``host`` (as the door reads it), else the top-level
        app when it claims no hosts, else None: a host no app claims is refused."""
        if host not in self._chosen:
            if len(self._chosen) >= HOST_CACHE_LIMIT:
                self._chosen.clear()
            name = choose_app(self._hosts, host)
            self._chosen[host] = self.by_name[name] if name is not None else None
        return self._chosen[host]

    def for_request(self, scope: MutableMapping[str, Any], kind: str) -> Parts | None:
        """The app of a request (``kind``: ``nginx``, ``forward`` or ``page``), chosen by the
        original host the one door reads: the proxy's forwarded headers for ``/auth/*`` (only
        from a trusted peer), the page's Host (``X-Forwarded-Host`` from a trusted peer).

        A request whose host cannot be read (an untrusted peer, a malformed or missing host)
        goes to the top-level app, which refuses it as it always has; the headers read here
        are kept in the scope, so the door reads them once."""
        default = self.default
        if len(self.by_name) == 1:
            return default
        raw = scope.get("headers", [])
        client = scope.get("client") or ("",)
        # The choice is a function of these alone: the same request again is answered from memory.
        memo = (kind, client[0], scope.get("scheme"), tuple(raw))
        if memo in self._routes:
            return self._routes[memo]
        if len(self._routes) >= HOST_CACHE_LIMIT:
            self._routes.clear()
        chosen = self._routes[memo] = self._choose_for(scope, kind, client)
        return chosen

    def _choose_for(self, scope: MutableMapping[str, Any], kind: str,
                    client: tuple[Any, ...]) -> Parts | None:
        default = self.default
        headers = Headers(scope.get("headers", []))
        scope[READ_HEADERS] = headers
        trusted = bool(client[0]) and bool(default.door.is_trusted(str(client[0])))
        try:
            forwarded = headers.forwarded()
            if kind == "page":
                host = page_origin(forwarded, trusted, scope.get("scheme", "http"))[1]
            elif not trusted:
                return default
            else:
                read = original_for_nginx if kind == "nginx" else original_for_forward
                host = read(forwarded).host
        except BadForwardedRequest:
            return default
        return self.choose(host)


def build_parts(config: Config, storage: Storage | None = None, resolver: Resolver | None = None,
                clock: Clock = wall, resolvers: Mapping[str, Resolver] | None = None) -> Parts:
    """Every part of a sidecar for ``config`` (the top-level app's, with every app's in
    ``apps``); ``storage``, ``resolver`` (the top-level app's), ``resolvers`` (by app name)
    and ``clock`` may be given."""
    storage = storage or make_storage(config)
    metrics = Metrics()
    issuers: dict[str, str] = {}  # a namespace's notices name the issuer of its first app
    for app in config.every_app:
        issuers.setdefault(app.users_namespace, app.config.totp.issuer)
    notifier = Notifier(config.notify, config.totp.issuer, contact=storage.contact,
                        issuers=issuers)

    def on_event(event: str, user: str, detail: dict[str, Any]) -> None:
        metrics.event(event)
        notifier.notify(event, user, detail)

    accounts = Accounts(config, storage, clock, on_event=on_event)
    remember = config.remember_device
    devices = (Devices(storage, config.signing_keys, remember.max_days, accounts.states)
               if remember.enabled else None)
    passkeys = Passkeys(accounts, storage)  # one for every app: its users by storage key
    apps = Apps()
    logins = Logins()  # one for every app: apps may share a session cookie
    given = dict(resolvers or {})
    if resolver is not None:
        given[DEFAULT_APP] = resolver

    def app_parts(app: AppConfig) -> Parts:
        settings = app.config
        passes = Passes(settings.cookie, settings.signing_keys, settings.hash_key, clock)
        app_metrics = metrics.for_app(app.name)
        app_resolver = given.get(app.name) or make_resolver(settings, app_metrics, logins)
        if isinstance(app_resolver, IntrospectResolver):  # one given by a test or a caller
            app_resolver.logins = logins
        decision = Decision(settings, app_resolver, accounts, passes, devices, clock,
                            make_policy(settings), namespace=app.users_namespace, logins=logins)
        return Parts(settings, clock, storage, app_resolver, app_metrics, notifier, accounts, passes,
                     devices, make_door(settings), decision, passkeys, app.name, app.users_namespace,
                     apps)

    for app in config.every_app:
        apps.add(app_parts(app), app.hosts)
    return apps.default
