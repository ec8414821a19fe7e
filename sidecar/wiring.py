"""The composition root: the one place where the parts of a running sidecar are chosen and joined.

``build_parts(config)`` makes each part once (storage, the app's who-am-I resolver, the
account service, passes, remembered devices, security keys, the one door, the one decision, metrics,
notices) and hands them over as ``Parts``. The web app, the command line, the benchmarks and
the tests build here and nowhere else; a test replaces a part by passing it in (a storage,
a resolver talking to an in-process app, a fixed clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sidecar.accounts import Accounts
from sidecar.config import Config, PostgresConfig
from sidecar.core.clock import Clock, wall
from sidecar.core.forwarded import TrustedProxies
from sidecar.core.policy import Level, Policy, Rule, exact_path_rule
from sidecar.core.request import CODES_COOKIE, ENROLL_COOKIE, RESET_COOKIES, Door
from sidecar.decision import Decision
from sidecar.devices import Devices
from sidecar.metrics import Metrics
from sidecar.notify import Notifier
from sidecar.passes import Passes
from sidecar.passkeys import Passkeys
from sidecar.primary import HeaderResolver, IntrospectResolver, Resolver
from sidecar.storage import SQLiteStorage, Storage


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


def make_resolver(config: Config, metrics: Metrics | None = None) -> Resolver:
    """Who is logged in: the app's who-am-I URL, or a trusted proxy's headers."""
    if config.primary.resolver == "header":
        return HeaderResolver(config)
    return IntrospectResolver(config, observe=metrics.whoami if metrics else None)


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
    """The parts of one running sidecar, each made once by ``build_parts``."""

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

    async def open(self) -> None:
        """Open the database and start applying its change feed to the user states."""
        await self.storage.open()
        self.accounts.states.start()

    async def aclose(self) -> None:
        """Send the queued notices, then close the resolver's client and the database."""
        await self.accounts.states.stop()
        await self.notifier.aclose()
        await self.resolver.aclose()
        await self.storage.close()


def build_parts(config: Config, storage: Storage | None = None, resolver: Resolver | None = None,
                clock: Clock = wall) -> Parts:
    """Every part of a sidecar for ``config``; ``storage``, ``resolver`` and ``clock`` may be given."""
    storage = storage or make_storage(config)
    metrics = Metrics()
    resolver = resolver or make_resolver(config, metrics)
    notifier = Notifier(config.notify, config.totp.issuer, contact=storage.contact)

    def on_event(event: str, user: str, detail: dict[str, Any]) -> None:
        metrics.event(event)
        notifier.notify(event, user, detail)

    accounts = Accounts(config, storage, clock, on_event=on_event)
    passes = Passes(config.cookie, config.signing_keys, config.hash_key, clock)
    remember = config.remember_device
    devices = (Devices(storage, config.signing_keys, remember.max_days, accounts.states)
               if remember.enabled else None)
    decision = Decision(config, resolver, accounts, passes, devices, clock, make_policy(config))
    return Parts(config, clock, storage, resolver, metrics, notifier, accounts, passes, devices,
                 make_door(config), decision, Passkeys(accounts, storage))
