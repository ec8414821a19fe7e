"""The parts one running sidecar shares between its forward-auth endpoints and its pages.

``Sidecar.evaluate`` is the one way a decision is made: a ``Reading`` of the request (from
``sidecar.core.request``, the one door) and the target the user wants go in; the facts are
gathered (who the app says is logged in *now*, whether this app session passed 2FA for that
user, the strictest rule for the target) and ``policy.decide`` gives the verdict. The
forward-auth endpoints and every page ask it; none re-derives allow / challenge / enroll.
"""

from __future__ import annotations

import hmac
import logging
import math
from dataclasses import dataclass
from typing import Any

from sidecar.accounts import Accounts
from sidecar.config import Config
from sidecar.core import policy, tokens
from sidecar.core.clock import Clock, wall
from sidecar.core.forwarded import TrustedProxies
from sidecar.core.policy import Level, Policy, Rule, Subject, Target
from sidecar.core.request import RESET_COOKIES, Door, Reading
from sidecar.core.tokens import Pass, Passes, Signer
from sidecar.devices import Devices
from sidecar.errors import Ambiguous
from sidecar.metrics import Metrics
from sidecar.notify import Notifier
from sidecar.primary import Credential, Identity, Resolved, Resolver, make_resolver
from sidecar.storage import Storage
from sidecar.wiring import make_storage

log = logging.getLogger("sidecar")
REFRESH_AFTER = 60  # seconds between idle-timeout refreshes of a 2FA cookie


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
                 clock: Clock = wall) -> None:
        self.config = config
        self.clock = clock
        self.storage: Storage = storage or make_storage(config)
        self.resolver: Resolver = resolver or make_resolver(config)
        self.metrics = Metrics()
        self.notifier = Notifier(config.notify, config.totp.issuer, contact=self.storage.contact)
        self.accounts = Accounts(config, self.storage, clock, on_event=self.on_event)
        self.passes = Passes(config.signing_keys)
        self.csrf_signer = Signer(config.signing_keys, tokens.CSRF)
        self.policy = Policy(config.rules, config.default_level, config.prefix)
        self.trusted = TrustedProxies(config.server.trusted_proxies)
        remember = config.remember_device
        self.devices = (Devices(self.storage, config.signing_keys, remember.max_days)
                        if remember.enabled else None)
        self.own_cookies = (config.cookie.name, remember.cookie_name, *RESET_COOKIES)
        names = config.primary.header
        self.door = Door(self.own_cookies, config.primary.session_cookies,
                         (names.user, names.email, names.name, names.groups)
                         if config.primary.resolver == "header" else None,
                         self.trusted.trusted)

    def on_event(self, event: str, user: str, detail: dict[str, Any]) -> None:
        self.metrics.event(event)
        self.notifier.notify(event, user, detail)

    def read(self, scope: Any) -> Reading:
        """The one reading of a request (see ``sidecar.core.request``)."""
        return self.door.read(scope)

    def fingerprint(self, reading: Reading) -> str:
        return self.fingerprint_of(reading.session_key)

    def fingerprint_of(self, key: str) -> str:
        return tokens.fingerprint(self.config.hash_key, key)

    # -- who is logged in ---------------------------------------------------------------
    async def resolve(self, reading: Reading) -> Resolved:
        """Who the app says is logged in now. Ambiguous when the request could name two users.

        A cookie session that also carries ``Authorization`` is asked about once more with
        the ``Authorization`` alone: an app that prefers either must see the same user.
        """
        if reading.problem:
            raise Ambiguous(reading.problem)
        resolved = await self.resolver.resolve(reading)
        if reading.kind == "session" and reading.authorization and reading.session_key:
            alone = await self.resolver.resolve_credential(Credential("", reading.authorization))
            if alone.identity is not None and (
                    resolved.identity is None or alone.identity.user != resolved.identity.user):
                raise Ambiguous("the session cookie and the Authorization header name "
                                "different users")
            resolved = Resolved(resolved.identity, min(resolved.until, alone.until))
        return resolved

    # -- the decision -------------------------------------------------------------------
    def rule(self, target: Target, identity: Identity | None) -> Rule:
        subject = Subject(identity.user, identity.groups) if identity else Subject(None)
        return self.policy.rule_for(target, subject)

    async def evaluate(self, reading: Reading, target: Target | None,
                       resolved: Resolved | None = None) -> Verdict:
        """The verdict for ``reading`` wanting ``target`` (None: a page of the sidecar's own,
        which needs 2FA whenever the user has it on)."""
        if resolved is None:
            resolved = await self.resolve(reading)
        identity = resolved.identity
        rule = self.rule(target, identity) if target is not None else Rule(Level.OPTIONAL)
        user = identity.user if identity else None
        item: Pass | None = None
        new_pass: str | None = None
        enrolled = False
        if user is not None and rule.level in (Level.OPTIONAL, Level.REQUIRED):
            state = await self.accounts.cached_state(user)
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

    # -- the 2FA cookie -----------------------------------------------------------------
    def _valid_pass(self, reading: Reading, user: str, generation: int) -> Pass | None:
        """The 2FA cookie, when it is fresh, bound to this app session, for ``user`` and of
        the user's current 2FA generation."""
        value = reading.cookie(self.config.cookie.name)
        if not value:
            return None
        item = self.passes.loads(value)
        if item is None:
            return None
        settings = self.config.cookie
        if not tokens.pass_is_fresh(item, self.clock(), settings.max_age, settings.idle_timeout):
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
        return self.passes.dumps(Pass(user, self.fingerprint_of(session_key), now, now, generation,
                                     code_at=now if code_typed else 0))

    def refreshed(self, item: Pass) -> str | None:
        """A re-signed cookie with a new last-seen time, when an idle timeout needs it."""
        now = int(self.clock())
        if not self.config.cookie.idle_timeout or now - item.seen_at < REFRESH_AFTER:
            return None
        return self.passes.dumps(Pass(item.user, item.fingerprint, item.issued_at, now,
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
        return self.csrf_signer.mac(user, self.fingerprint(reading))

    def csrf_ok(self, user: str, reading: Reading, token: str) -> bool:
        return self.csrf_signer.mac_valid(token, user, self.fingerprint(reading))


def cookie_line(name: str, value: str, max_age: int, secure: bool, path: str = "/",
                same_site: str = "Lax") -> str:
    """The one Set-Cookie builder: HttpOnly always, SameSite, Secure over https."""
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly",
             f"SameSite={same_site}"]
    return "; ".join(parts + (["Secure"] if secure else []))
