"""The account operations behind the pages: enroll, check a code, disable, new codes.

Depends only on the storage roles, the config and injected clocks. The hot path's view of
a user (enrolled? which generation?) comes from ``sidecar.states``: memory kept current by the
change feed, so a known user costs no storage read, and a change made anywhere reaches every
instance within about a second; changes made here are forgotten at once. The user id is an
opaque key. TOTP secrets are sealed (AES-GCM, bound to the user) before they reach storage; a pending
secret belongs to one app session of the user.

Every code is compared only after the throttle (``sidecar.throttle``) reserved the attempt
as a failure; every change is written to the audit trail (``sidecar.audit``).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

from sidecar.audit import Audit, OnEvent
from sidecar.config import Config
from sidecar.core import recovery, totp
from sidecar.core.clock import Clock, Monotonic, wall
from sidecar.core.clock import monotonic as steady
from sidecar.crypto import SecretBox
from sidecar.states import CachedState, States, cached_state
from sidecar.storage import SIGNIN, Attempt, Scope, Storage, UserState
from sidecar.throttle import Throttle


class Check(enum.Enum):
    OK = "ok"
    INVALID = "invalid"  # wrong or malformed code, or an already-used recovery code
    REPLAYED = "replayed"  # a right TOTP code that was used already (wait for the next one)
    LOCKED = "locked"  # too many failures; try again later
    NOT_ENROLLED = "not_enrolled"


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: Check
    used_recovery: bool = False
    locked_until: int = 0
    recovery_left: int = 0
    failures: int = 0  # a failed check: the user's failures in the window, this one included


class Accounts:
    def __init__(self, config: Config, storage: Storage,
                 clock: Clock = wall,
                 on_event: OnEvent = lambda *event: None,
                 monotonic: Monotonic = steady) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        self.monotonic = monotonic
        self.audit = Audit(storage, clock, on_event)
        self.throttle = Throttle(storage, config.throttle, self.audit)
        self.box = SecretBox(config.encryption_keys)
        self.params = totp.TotpParams(config.totp.digits, config.totp.period,
                                      config.totp.algorithm, config.totp.skew)
        self.states = States(storage, config.cache.users, monotonic)
        self._contacts: OrderedDict[str, str] = OrderedDict()

    # -- the hot path's view ------------------------------------------------------------
    async def cached_state(self, user_id: str) -> CachedState:
        """The user's enrollment state: from memory while the change feed vouches for it,
        else read from storage (StorageUnavailable while it is down: no stale answer)."""
        return await self.states.get(user_id, self._load)

    async def _load(self, user_id: str) -> CachedState:
        user = await self.storage.get_user(user_id)
        return cached_state(user.enrolled, user.generation)

    def generation_is(self, user_id: str, generation: int) -> bool:
        """Whether the user's state in memory is enrolled at ``generation`` (no I/O); False
        when memory does not know or cannot vouch for it (the feed is not being read)."""
        return self.states.generation_is(user_id, generation)

    def cache_sizes(self) -> dict[str, tuple[int, int]]:
        return {"user_states": (len(self.states), self.states.limit),
                "contacts": (len(self._contacts), self.states.limit)}

    async def remember_contact(self, user_id: str, email: str) -> None:
        """Keep the address notices go to, when the app told us one that changed."""
        if email and email != self._contacts.get(user_id):
            await self.storage.set_contact(user_id, email)
            self._contacts[user_id] = email
            if len(self._contacts) > self.states.limit:
                self._contacts.popitem(last=False)

    def forget(self, user_id: str) -> None:
        self.states.forget(user_id)

    async def user(self, user_id: str) -> UserState:
        return await self.storage.get_user(user_id)

    # -- enrollment ---------------------------------------------------------------------
    async def pending_secret(self, user_id: str, session: str = "") -> str:
        """The secret being enrolled in this app session: the same one on reload until it expires.

        ``session`` is the primary session's fingerprint: another session of the same user
        (someone else who knows the password) gets a secret of its own, never this one.
        """
        now = int(self.clock())
        sealed = await self.storage.pending_secret(user_id, session, now)
        if sealed is None:
            expires = now + self.config.totp.enrollment_timeout
            fresh = self.box.seal(user_id, totp.new_secret())
            sealed = await self.storage.put_pending(user_id, session, fresh, expires, now)
        return self.box.open(user_id, sealed)

    async def complete_enrollment(self, user_id: str, code: str, client: str,
                                  session: str = "") -> tuple[CheckResult, list[str], int]:
        """Verify a code from this session's pending secret; on success 2FA is on.

        Returns the result, the new recovery codes (shown once) and the new generation. A user
        whose security keys have 2FA on already keeps the recovery codes (none are returned).
        """
        now = int(self.clock())
        attempt = await self.throttle.reserve(user_id, client, now)
        if attempt.failure_id is None:
            return self._refused(attempt, SIGNIN, now), [], 0
        sealed = await self.storage.pending_secret(user_id, session, now)
        step = None
        if sealed is not None:
            step = totp.match_step(self.box.open(user_id, sealed), code, now, self.params)
        codes: list[str] = []
        generation = None
        first = False
        if sealed is not None and step is not None:
            first = not (await self.storage.get_user(user_id)).enrolled
            codes = recovery.new_codes() if first else []
            generation = await self.storage.complete_enrollment(
                user_id, session, sealed, step, self.hashes(user_id, codes), now)
        if generation is None:  # wrong code, none pending, or another request enrolled it
            return await self._failed(user_id, client, now, attempt, SIGNIN), [], 0
        await self.throttle.passed(user_id, SIGNIN, attempt)
        if first:
            await self.enabled(user_id, client)
        else:
            self.forget(user_id)
            await self.audit("app_added", user_id, client)
        return CheckResult(Check.OK, recovery_left=len(codes)), codes, generation

    async def enabled(self, user_id: str, client: str, method: str = "") -> None:
        """2FA was just turned on by a first factor (an app, or a security key: ``method``)."""
        self.forget(user_id)
        if method:
            await self.audit("enabled", user_id, client, method=method)
        else:
            await self.audit("enabled", user_id, client)

    def hashes(self, user_id: str, codes: list[str]) -> list[str]:
        return [recovery.code_hash(self.config.hash_key, user_id, recovery.normalize(c) or "")
                for c in codes]

    # -- codes --------------------------------------------------------------------------
    async def check(self, user_id: str, text: str, client: str, allow_recovery: bool = True,
                    scope: Scope = SIGNIN) -> CheckResult:
        """Accept a current TOTP code (once) or an unused recovery code (once).

        ``scope`` is what a failure counts against: ``signin`` (the user's own sign-in) or
        ``reset`` (the password-reset gate, which anyone can reach with an account name).
        """
        now = int(self.clock())
        user = await self.storage.get_user(user_id)
        if not user.enrolled:  # with security keys only, recovery codes still work here
            return CheckResult(Check.NOT_ENROLLED)
        attempt = await self.throttle.reserve(user_id, client, now, scope)
        if attempt.failure_id is None:
            return self._refused(attempt, scope, now)
        result = await self._verify(user, text, allow_recovery, now)
        if result is None or result.check is Check.REPLAYED:
            return await self._failed(user_id, client, now, attempt, scope,
                                      replayed=result is not None)
        await self.throttle.passed(user_id, scope, attempt)
        if result.used_recovery:
            await self.audit("recovery_code_used", user_id, client, remaining=result.recovery_left)
        else:
            await self.audit("challenge_passed", user_id, client, method="totp")
        return result

    async def _verify(self, user: UserState, text: str, allow_recovery: bool,
                      now: int) -> CheckResult | None:
        """OK when ``text`` is a current, unused TOTP code or an unused recovery code (now used);
        REPLAYED when it is a current TOTP code that was used already; None otherwise."""
        digits = totp.parse_code(text, self.params.digits)
        if digits is not None and user.secret is not None:
            secret = self.box.open(user.user_id, user.secret)
            step = totp.match_step(secret, digits, now, self.params)  # one comparison per guess
            if step is not None and step <= user.last_step:  # used, unless a later step shares it
                step = totp.match_step(secret, digits, now, self.params, after_step=user.last_step)
                if step is None:
                    return CheckResult(Check.REPLAYED)
            if step is not None and await self.storage.use_step(user.user_id, user.secret, step):
                return CheckResult(Check.OK, recovery_left=user.recovery_left)
            if step is not None:  # another request used it first
                return CheckResult(Check.REPLAYED)
        elif allow_recovery and (normalized := recovery.normalize(text)) is not None:
            digest = recovery.code_hash(self.config.hash_key, user.user_id, normalized)
            if await self.storage.use_recovery_code(user.user_id, digest, now):
                left = (await self.storage.get_user(user.user_id)).recovery_left
                return CheckResult(Check.OK, used_recovery=True, recovery_left=left)
        return None

    def _refused(self, attempt: Attempt, scope: Scope, now: int) -> CheckResult:
        """LOCKED, nothing compared: the throttle refused the attempt."""
        return CheckResult(Check.LOCKED, locked_until=self.throttle.refused_until(attempt, scope, now))

    async def _failed(self, user_id: str, client: str, now: int, attempt: Attempt,
                      scope: Scope, replayed: bool = False) -> CheckResult:
        """A failed check (a replayed code counts as one too): LOCKED when it locks."""
        until = await self.throttle.failed(user_id, client, now, attempt, scope)
        if until:
            return CheckResult(Check.LOCKED, locked_until=until, failures=attempt.by_user)
        return CheckResult(Check.REPLAYED if replayed else Check.INVALID, failures=attempt.by_user)

    async def disable(self, user_id: str, actor: str = "user", client: str = "") -> bool:
        changed = await self.storage.disable(user_id)
        self.forget(user_id)
        if changed:
            await self.audit("disabled" if actor == "user" else "admin_reset", user_id, client)
        return changed

    async def unlock(self, user_id: str, client: str = "cli") -> bool:
        changed = await self.storage.unlock(user_id)
        self.forget(user_id)
        if changed:
            await self.audit("unlocked", user_id, client)
        return changed

    async def new_recovery_codes(self, user_id: str, client: str) -> list[str]:
        codes = recovery.new_codes()
        await self.storage.replace_recovery_codes(user_id, self.hashes(user_id, codes))
        await self.audit("codes_regenerated", user_id, client)
        return codes

    async def rotate_keys(self) -> tuple[int, int]:
        """Re-seal every stored secret under the newest key: (re-sealed, already current)."""
        done = current = 0
        for table, user_id, session, sealed in await self.storage.sealed_secrets():
            if not self.box.needs_reseal(sealed):
                current += 1
                continue
            fresh = self.box.seal(user_id, self.box.open(user_id, sealed))
            if await self.storage.replace_sealed(table, user_id, session, sealed, fresh):
                done += 1
        return done, current
