"""The parts one running sidecar shares between its forward-auth endpoints and its pages.

``Sidecar.evaluate`` is the one way a decision is made: a ``Reading`` of the request (from
``sidecar.request``, the one door) and the target the user wants go in; the facts are
gathered (who the app says is logged in *now*, whether this app session passed 2FA for that
user, the strictest rule for the target) and ``policy.decide`` gives the verdict. The
forward-auth endpoints and every page ask it; none re-derives allow / challenge / enroll.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar import cookies, policy, reset
from sidecar.config import Config, Rule
from sidecar.cookies import Pass, PassCodec
from sidecar.devices import Devices
from sidecar.errors import StorageUnavailable
from sidecar.forwarded import TrustedProxies
from sidecar.metrics import Metrics
from sidecar.notify import Notifier
from sidecar.primary import Credential, Identity, Resolved, Resolver, make_resolver
from sidecar.request import Ambiguous, Door, Reading
from sidecar.service import TwoFactor
from sidecar.storage import Storage, make_storage

log = logging.getLogger("sidecar")
REFRESH_AFTER = 60  # seconds between idle-timeout refreshes of a 2FA cookie
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ENROLL_COOKIE = "totp_sidecar_enroll"  # binds set-up to a browser when the app session has no cookie


@dataclass(frozen=True, slots=True)
class Target:
    """What the user wants: the host, path and method the rules are matched against."""

    host: str
    path: str
    method: str = "GET"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision and the facts it rests on (for the response and the answer cache)."""

    outcome: policy.Outcome
    identity: Identity | None
    rule: Rule
    enrolled: bool = False
    item: Pass | None = None  # the verified 2FA cookie of this app session
    new_pass: str | None = None  # a 2FA cookie value to set (refreshed, or from a device)
    until: float = math.inf  # monotonic time until which the identity may be reused

    @property
    def user(self) -> str | None:
        return self.identity.user if self.identity else None

    @property
    def verified(self) -> bool:
        return self.item is not None or self.new_pass is not None


class Sidecar:
    def __init__(self, config: Config, storage: Storage | None = None,
                 resolver: Resolver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.storage: Storage = storage or make_storage(config)
        self.resolver: Resolver = resolver or make_resolver(config)
        self.metrics = Metrics()
        self.notifier = Notifier(config.notify, config.totp.issuer, contact=self.storage.contact)
        self.service = TwoFactor(config, self.storage, clock, on_event=self.on_event)
        self.codec = PassCodec(config.signing_keys)
        self.trusted = TrustedProxies(config.server.trusted_proxies)
        remember = config.remember_device
        self.devices = (Devices(self.storage, config.signing_keys, remember.max_days)
                        if remember.enabled else None)
        self.own_cookies = (config.cookie.name, remember.cookie_name, ENROLL_COOKIE,
                            *reset.OWN_COOKIES)
        names = config.primary.header
        self.door = Door(self.own_cookies, config.primary.session_cookies,
                         (names.user, names.email, names.name, names.groups)
                         if config.primary.resolver == "header" else None,
                         self.trusted.trusted)

    def on_event(self, event: str, user: str, detail: dict[str, Any]) -> None:
        self.metrics.event(event)
        self.notifier.notify(event, user, detail)

    def read(self, scope: Any) -> Reading:
        """The one reading of a request (see ``sidecar.request``)."""
        return self.door.read(scope)

    def fingerprint(self, reading: Reading) -> str:
        return self.fingerprint_of(reading.session_key)

    def fingerprint_of(self, key: str) -> str:
        return cookies.fingerprint(self.config.hash_key, key)

    # -- who is logged in ---------------------------------------------------------------
    async def resolve(self, reading: Reading, method: str = "GET") -> Resolved:
        """Who the app says is logged in now. Ambiguous when the request could name two users.

        A request with cookies that also carries ``Authorization`` is asked about once more
        with the ``Authorization`` alone: an app that prefers either must see the same user
        (and for an API request, its cookies must not name anyone else, e.g. a remember-me
        cookie missing from ``primary.session_cookies``).
        """
        if reading.problem:
            raise Ambiguous(reading.problem)
        if method not in SAFE_METHODS:  # it may log someone else into this very session
            self.resolver.invalidate(Credential(reading.cookies.header, reading.authorization))
        resolved = await self.resolver.resolve(reading)
        if reading.authorization and reading.cookies.header and self.config.primary.resolver != "header":
            alone = await self.resolver.resolve_credential(Credential("", reading.authorization))
            if reading.kind == "session":
                differs = alone.identity is not None and (
                    resolved.identity is None or alone.identity.user != resolved.identity.user)
            else:  # an API request: its cookies must not change who the app sees
                differs = (alone.identity is None) != (resolved.identity is None) or (
                    alone.identity is not None and resolved.identity is not None
                    and alone.identity.user != resolved.identity.user)
            if differs:
                raise Ambiguous("the cookies and the Authorization header name different users")
            resolved = Resolved(resolved.identity, min(resolved.until, alone.until))
        return resolved

    # -- the decision -------------------------------------------------------------------
    def rule(self, target: Target, identity: Identity | None) -> Rule:
        return policy.rule_for(self.config.rules, self.config.default_level, target.host,
                               target.path, target.method,
                               identity.user if identity else None, own_prefix=self.config.prefix,
                               groups=identity.groups if identity else ())

    async def evaluate(self, reading: Reading, target: Target | None,
                       resolved: Resolved | None = None) -> Verdict:
        """The verdict for ``reading`` wanting ``target`` (None: a page of the sidecar's own,
        which needs 2FA whenever the user has it on)."""
        if resolved is None:
            resolved = await self.resolve(reading, target.method if target else "GET")
        identity = resolved.identity
        if identity is not None and identity.email:
            await self._remember_contact(identity)
        rule = self.rule(target, identity) if target is not None else Rule("optional")
        user = identity.user if identity else None
        item: Pass | None = None
        new_pass: str | None = None
        enrolled = False
        if user is not None and rule.level in ("optional", "required"):
            state = await self.service.cached_state(user)
            enrolled = state.enrolled
            if enrolled and reading.kind == "session":
                item = self._valid_pass(reading, user, state.generation)
                if item is not None:
                    new_pass = self.refreshed(item)
                elif await self._device_vouches(reading, user, state.generation):
                    new_pass = self.pass_for(user, reading.session_key, state.generation,
                                             code_typed=False)
        code_at = item.code_at if item is not None else 0
        verified = item is not None or new_pass is not None
        outcome = policy.decide(policy.Facts(
            rule.level, user, enrolled, verified, reading.kind,
            self.config.api.bearer == "pass",
            not verified or policy.code_is_recent(rule, code_at, self.clock())))
        return Verdict(outcome, identity, rule, enrolled, item, new_pass, resolved.until)

    async def _remember_contact(self, identity: Identity) -> None:
        """The address the app reports now is the user's at the reset gate and for notices
        (a write only when it changed; a storage fault here never fails the request)."""
        with contextlib.suppress(StorageUnavailable):
            await self.service.remember_contact(identity.user, identity.email)

    # -- the 2FA cookie -----------------------------------------------------------------
    def _valid_pass(self, reading: Reading, user: str, generation: int) -> Pass | None:
        """The 2FA cookie, when it is fresh, bound to this app session, for ``user`` and of
        the user's current 2FA generation."""
        value = reading.cookie(self.config.cookie.name)
        if not value:
            return None
        item = self.codec.loads(value)
        if item is None:
            return None
        settings = self.config.cookie
        if not cookies.pass_is_fresh(item, self.clock(), settings.max_age, settings.idle_timeout):
            return None
        if not hmac.compare_digest(item.fingerprint, self.fingerprint(reading)):
            return None
        if not hmac.compare_digest(item.user.encode(), user.encode()):
            return None
        return item if item.generation == generation else None

    async def _device_vouches(self, reading: Reading, user: str, generation: int) -> bool:
        if self.devices is None:
            return False
        value = reading.cookie(self.config.remember_device.cookie_name)
        return bool(value) and await self.devices.vouches(value, user, generation, self.clock())

    def pass_expiry(self, item: Pass) -> float:
        """When ``item`` stops being fresh, on the sidecar's clock."""
        settings = self.config.cookie
        end = item.issued_at + settings.max_age
        if settings.idle_timeout:
            end = min(end, item.seen_at + settings.idle_timeout)
        return float(end)

    def new_pass(self, identity: Identity, reading: Reading, generation: int,
                 code_typed: bool = True) -> str:
        """A pass for this app session; ``code_typed`` False when a remembered device vouched.

        It names the user and the session only: e-mail, name and groups always come from the
        app's current answer, never from the cookie.
        """
        return self.pass_for(identity.user, reading.session_key, generation, code_typed)

    def pass_for(self, user: str, session_key: str, generation: int, code_typed: bool = True) -> str:
        now = int(self.clock())
        return self.codec.dumps(Pass(user, self.fingerprint_of(session_key), now, now, generation,
                                     code_at=now if code_typed else 0))

    def refreshed(self, item: Pass) -> str | None:
        """A re-signed cookie with a new last-seen time, when an idle timeout needs it."""
        now = int(self.clock())
        if not self.config.cookie.idle_timeout or now - item.seen_at < REFRESH_AFTER:
            return None
        return self.codec.dumps(Pass(item.user, item.fingerprint, item.issued_at, now,
                                     item.generation, code_at=item.code_at))

    def device_cookie(self, value: str, secure: bool) -> str:
        remember = self.config.remember_device
        return cookie_line(remember.cookie_name, value, remember.max_days * 86400, secure)

    def set_cookie(self, value: str, secure: bool) -> str:
        return cookie_line(self.config.cookie.name, value, self.config.cookie.max_age, secure)

    def clear_cookie(self, secure: bool) -> str:
        return cookie_line(self.config.cookie.name, "", 0, secure)

    def secure(self, scheme: str) -> bool:
        mode = self.config.cookie.secure
        return mode == "always" or (mode == "auto" and scheme == "https")

    def csrf(self, user: str, reading: Reading) -> str:
        return cookies.csrf_token(self.config.signing_keys, user, self.fingerprint(reading))

    def csrf_ok(self, user: str, reading: Reading, token: str) -> bool:
        return cookies.csrf_valid(self.config.signing_keys, user, self.fingerprint(reading), token)


def cookie_line(name: str, value: str, max_age: int, secure: bool, path: str = "/",
                same_site: str = "Lax") -> str:
    """The one Set-Cookie builder: HttpOnly always, SameSite, Secure over https."""
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly",
             f"SameSite={same_site}"]
    return "; ".join(parts + (["Secure"] if secure else []))
