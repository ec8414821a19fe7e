"""The one decision: who is logged in now, did this app session pass 2FA, what does the rule want.

``Decision.evaluate`` is the one way a decision is made: a ``Reading`` of the request (from
``sidecar.core.request``, the one door) and the target the user wants go in; the facts are
gathered (who the app says is logged in *now*, whether this app session passed 2FA for that
user, the strictest rule for the target) and ``policy.decide`` gives the verdict. The
forward-auth endpoints and every page ask it; none re-derives allow / challenge / enroll.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass

from sidecar.accounts import Accounts
from sidecar.config import Config
from sidecar.core import policy
from sidecar.core.apps import DEFAULT_APP, storage_key
from sidecar.core.clock import Clock
from sidecar.core.logins import Logins, session_tokens
from sidecar.core.policy import Level, Policy, Rule, Subject, Target
from sidecar.core.request import SAFE_METHODS, Reading
from sidecar.core.tokens import Pass
from sidecar.devices import Devices
from sidecar.errors import Ambiguous, StorageUnavailable
from sidecar.passes import Passes
from sidecar.primary import Credential, Identity, Resolved, Resolver


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
    generation: int = 0  # the user's 2FA generation this verdict rests on (0: 2FA off)

    @property
    def user(self) -> str | None:
        """The user's storage key (the user in the app's namespace)."""
        return self.identity.storage_key if self.identity else None

    @property
    def verified(self) -> bool:
        return self.item is not None or self.new_pass is not None


class Decision:
    """Asks the app who is logged in, reads the pass or a remembered device, finds the rule,
    and lets ``policy.decide`` answer."""

    def __init__(self, config: Config, resolver: Resolver, accounts: Accounts, passes: Passes,
                 devices: Devices | None, clock: Clock, policy: Policy | None = None,
                 namespace: str = DEFAULT_APP, logins: Logins | None = None) -> None:
        self.config = config
        #: unsafe requests by session, shared with the who-am-I and answer caches
        self.logins = logins if logins is not None else getattr(resolver, "logins", Logins())
        self.namespace = namespace  # the app's users_namespace: whose 2FA states it reads
        self.resolver = resolver
        self.accounts = accounts
        self.passes = passes
        self.devices = devices
        self.clock = clock
        self.policy = policy or Policy(config.rules, config.default_level, config.prefix)

    # -- who is logged in ---------------------------------------------------------------
    async def resolve(self, reading: Reading, method: str = "GET") -> Resolved:
        """Who the app says is logged in now. Ambiguous when the request could name two users.

        A request with cookies that also carries ``Authorization`` is asked about once more
        with the ``Authorization`` alone: an app that prefers either must see the same user
        (and for an API request, its cookies must not name anyone else, e.g. a remember-me
        cookie missing from ``primary.session_cookies``). A request with an unsafe ``method``
        marks its session first (``Logins.mark``): no answer cached for it is used any more.
        """
        if reading.problem:
            raise Ambiguous(reading.problem)
        if method not in SAFE_METHODS:  # it may log someone else into this very session
            self.logins.mark(session_tokens(reading.session_key, reading.authorization))
        resolved = await self.resolver.resolve(reading)
        if reading.authorization and reading.cookies.header and self.config.primary.resolver != "header":
            alone = await self.resolver.resolve_credential(Credential(
                "", reading.authorization, session_tokens("", reading.authorization)))
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
        return self._in_namespace(resolved)

    def _in_namespace(self, resolved: Resolved) -> Resolved:
        """The identity with its storage key in this app's users namespace: the one place a
        user of an app becomes a key of the storage (``core.apps.storage_key``)."""
        identity = resolved.identity
        if identity is None or self.namespace == DEFAULT_APP:
            return resolved  # the top-level namespace keeps raw user ids (existing databases)
        key = storage_key(self.namespace, identity.user)
        return Resolved(dataclasses.replace(identity, key=key), resolved.until)

    # -- the decision -------------------------------------------------------------------
    def rule(self, target: Target, identity: Identity | None) -> Rule:
        subject = Subject(identity.user, identity.groups) if identity else Subject(None)
        return self.policy.rule_for(target, subject)

    async def evaluate(self, reading: Reading, target: Target | None,
                       resolved: Resolved | None = None) -> Verdict:
        """The verdict for ``reading`` wanting ``target`` (None: a page of the sidecar's own,
        which needs 2FA whenever the user has it on)."""
        if resolved is None:
            resolved = await self.resolve(reading, target.method if target else "GET")
        identity = resolved.identity
        if identity is not None and identity.email:
            await self._remember_contact(identity)
        rule = self.rule(target, identity) if target is not None else Rule(Level.OPTIONAL)
        user = identity.storage_key if identity else None
        item: Pass | None = None
        new_pass: str | None = None
        enrolled = False
        generation = 0
        if user is not None and rule.level in (Level.OPTIONAL, Level.REQUIRED):
            state = await self.accounts.cached_state(user)
            enrolled = state.enrolled
            generation = state.generation if enrolled else 0
            if enrolled and reading.kind == "session":
                item = self.passes.valid(reading, user, state.generation)
                if item is not None:
                    new_pass = self.passes.refreshed(item)
                elif await self._device_vouches(reading, user, state.generation):
                    new_pass = self.passes.issue(user, reading.session_key, state.generation,
                                                 code_typed=False)
        code_at = item.code_at if item is not None else 0
        verified = item is not None or new_pass is not None
        outcome = policy.decide(policy.Facts(
            rule.level, user, enrolled, verified, reading.kind,
            self.config.api.bearer == "pass",
            not verified or policy.code_is_recent(rule, code_at, self.clock())))
        return Verdict(outcome, identity, rule, enrolled, item, new_pass, resolved.until,
                       generation)

    async def _remember_contact(self, identity: Identity) -> None:
        """The address the app reports now is the user's at the reset gate and for notices
        (a write only when it changed; a storage fault here never fails the request)."""
        with contextlib.suppress(StorageUnavailable):
            await self.accounts.remember_contact(identity.storage_key, identity.email)

    async def _device_vouches(self, reading: Reading, user: str, generation: int) -> bool:
        if self.devices is None:
            return False
        value = reading.cookie(self.config.remember_device.cookie_name)
        return bool(value) and await self.devices.vouches(value, user, generation, self.clock())
