"""The account operations behind the pages: enroll, verify a code, disable, new codes.

Depends only on the Storage interface, the config and an injected clock. Keeps a brief
in-memory cache of each user's enrollment state (enrolled? which generation?) so the hot
path does not read storage on every request; changes made here update it at once.
TOTP secrets are sealed (AES-GCM, bound to the user) before they reach storage.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar import recovery, totp
from sidecar.config import Config
from sidecar.crypto import SecretBox
from sidecar.errors import StorageUnavailable
from sidecar.storage import Event, Storage, UserState

log = logging.getLogger("sidecar.audit")

STATE_CACHE_SECONDS = 5.0
STATE_CACHE_LIMIT = 100_000


class Check(enum.Enum):
    OK = "ok"
    INVALID = "invalid"  # wrong, malformed, replayed or already-used code
    LOCKED = "locked"  # too many failures; try again later
    NOT_ENROLLED = "not_enrolled"


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: Check
    used_recovery: bool = False
    locked_until: int = 0
    recovery_left: int = 0


@dataclass(frozen=True, slots=True)
class CachedState:
    enrolled: bool
    generation: int
    fetched_at: float


class TwoFactor:
    def __init__(self, config: Config, storage: Storage,
                 clock: Callable[[], float] = time.time,
                 on_event: Callable[[str, str, dict[str, Any]], None] = lambda *event: None
                 ) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        self.on_event = on_event
        self.box = SecretBox(config.encryption_keys)
        self.params = totp.TotpParams(config.totp.digits, config.totp.period,
                                      config.totp.algorithm, config.totp.skew)
        self._states: dict[str, CachedState] = {}
        self._contacts: dict[str, str] = {}

    # -- the hot path's view ------------------------------------------------------------
    async def cached_state(self, user_id: str) -> CachedState:
        """Enrollment state from a cache of a few seconds, read from storage when stale.

        While storage is down, what was last known stays in force (fail static); a user
        never seen before cannot be decided (StorageUnavailable).
        """
        now = time.monotonic()
        state = self._states.get(user_id)
        if state is not None and now - state.fetched_at < STATE_CACHE_SECONDS:
            return state
        try:
            user = await self.storage.get_user(user_id)
        except StorageUnavailable:
            if state is None:
                raise
            return state
        return self._remember(user, now)

    def _remember(self, user: UserState, now: float | None = None) -> CachedState:
        if len(self._states) >= STATE_CACHE_LIMIT:
            self._states.clear()
        state = CachedState(user.enrolled, user.generation,
                            time.monotonic() if now is None else now)
        self._states[user.user_id] = state
        return state

    def generation_is(self, user_id: str, generation: int) -> bool:
        """Whether the last known state of the user is enrolled at ``generation`` (no I/O)."""
        state = self._states.get(user_id)
        return state is not None and state.enrolled and state.generation == generation

    async def remember_contact(self, user_id: str, email: str) -> None:
        """Keep the address notices go to, when the app told us one that changed."""
        if email and email != self._contacts.get(user_id):
            await self.storage.set_contact(user_id, email)
            self._contacts[user_id] = email

    def forget(self, user_id: str) -> None:
        self._states.pop(user_id, None)

    async def user(self, user_id: str) -> UserState:
        user = await self.storage.get_user(user_id)
        self._remember(user)
        return user

    # -- audit --------------------------------------------------------------------------
    async def audit(self, event: str, user_id: str, client: str, level: int = logging.INFO,
                    **detail: Any) -> None:
        """One audit event: a JSON log line (sidecar.audit) and a row in the events table.

        Callers pass names and counts only: never a secret, a code or a cookie value.
        """
        log.log(level, event.replace("_", " "),
                extra={"event": event, "user": user_id, "client": client, **detail})
        self.on_event(event, user_id, detail)
        await self.storage.add_event(Event(int(self.clock()), event, user_id, client, detail))

    # -- enrollment ---------------------------------------------------------------------
    async def pending_secret(self, user_id: str) -> str:
        """The secret being enrolled: the same one on reload until it expires."""
        now = int(self.clock())
        sealed = await self.storage.pending_secret(user_id, now)
        if sealed is None:
            expires = now + self.config.totp.enrollment_timeout
            fresh = self.box.seal(user_id, totp.new_secret())
            sealed = await self.storage.put_pending(user_id, fresh, expires, now)
        return self.box.open(user_id, sealed)

    async def complete_enrollment(self, user_id: str, code: str,
                                  client: str) -> tuple[CheckResult, list[str], int]:
        """Verify a code from the pending secret; on success 2FA is on.

        Returns the result, the new recovery codes (shown once) and the new generation.
        """
        now = int(self.clock())
        blocked = await self._blocked(await self.storage.get_user(user_id), client, now)
        if blocked is not None:
            return blocked, [], 0
        sealed = await self.storage.pending_secret(user_id, now)
        step = None
        if sealed is not None:
            step = totp.match_step(self.box.open(user_id, sealed), code, now, self.params)
        if sealed is None or step is None:
            return await self._failed(user_id, client, now), [], 0
        codes = recovery.new_codes()
        generation = await self.storage.complete_enrollment(
            user_id, sealed, step, self._hashes(user_id, codes), now)
        if generation is None:
            return CheckResult(Check.INVALID), [], 0
        await self.storage.clear_failures(user_id)
        self.forget(user_id)
        await self.audit("enabled", user_id, client)
        return CheckResult(Check.OK, recovery_left=len(codes)), codes, generation

    def _hashes(self, user_id: str, codes: list[str]) -> list[str]:
        return [recovery.code_hash(self.config.hash_key, user_id, recovery.normalize(c) or "")
                for c in codes]

    # -- codes --------------------------------------------------------------------------
    async def check(self, user_id: str, text: str, client: str,
                    allow_recovery: bool = True) -> CheckResult:
        """Accept a current TOTP code (once) or an unused recovery code (once)."""
        now = int(self.clock())
        user = await self.storage.get_user(user_id)
        if not user.enrolled or user.secret is None:
            return CheckResult(Check.NOT_ENROLLED)
        blocked = await self._blocked(user, client, now)
        if blocked is not None:
            return blocked
        digits = totp.parse_code(text, self.params.digits)
        if digits is not None:
            secret = self.box.open(user_id, user.secret)
            step = totp.match_step(secret, digits, now, self.params, after_step=user.last_step)
            if step is not None and await self.storage.use_step(user_id, user.secret, step):
                await self.storage.clear_failures(user_id)
                await self.audit("challenge_passed", user_id, client, method="totp")
                return CheckResult(Check.OK, recovery_left=user.recovery_left)
        elif allow_recovery and (normalized := recovery.normalize(text)) is not None:
            digest = recovery.code_hash(self.config.hash_key, user_id, normalized)
            if await self.storage.use_recovery_code(user_id, digest, now):
                await self.storage.clear_failures(user_id)
                left = (await self.storage.get_user(user_id)).recovery_left
                await self.audit("recovery_code_used", user_id, client, remaining=left)
                return CheckResult(Check.OK, used_recovery=True, recovery_left=left)
        return await self._failed(user_id, client, now)

    async def _blocked(self, user: UserState, client: str, now: int) -> CheckResult | None:
        """LOCKED when the user is locked or this client failed too often lately."""
        if user.locked_until > now:
            return CheckResult(Check.LOCKED, locked_until=user.locked_until)
        limits = self.config.throttle
        if await self.storage.client_failures(client, now - limits.window) >= \
                limits.max_failures_per_client:
            return CheckResult(Check.LOCKED, locked_until=now + limits.window)
        return None

    async def _failed(self, user_id: str, client: str, now: int) -> CheckResult:
        limits = self.config.throttle
        by_user, by_client = await self.storage.add_failure(user_id, client, now, limits.window)
        await self.audit("challenge_failed", user_id, client, failures=by_user)
        if by_user >= limits.max_failures:
            until = now + limits.lockout
            await self.storage.lock(user_id, until)
            await self.audit("locked", user_id, client, logging.WARNING, until=until)
            return CheckResult(Check.LOCKED, locked_until=until)
        if by_client >= limits.max_failures_per_client:
            await self.audit("client_throttled", user_id, client, logging.WARNING,
                             failures=by_client)
            return CheckResult(Check.LOCKED, locked_until=now + limits.window)
        return CheckResult(Check.INVALID)

    async def disable(self, user_id: str, actor: str = "user", client: str = "") -> bool:
        changed = await self.storage.disable(user_id)
        self.forget(user_id)
        if changed:
            await self.audit("disabled" if actor == "user" else "admin_reset", user_id, client)
        return changed

    async def unlock(self, user_id: str, client: str = "cli") -> bool:
        changed = await self.storage.unlock(user_id)
        if changed:
            await self.audit("unlocked", user_id, client)
        return changed

    async def new_recovery_codes(self, user_id: str, client: str) -> list[str]:
        codes = recovery.new_codes()
        await self.storage.replace_recovery_codes(user_id, self._hashes(user_id, codes))
        await self.audit("codes_regenerated", user_id, client)
        return codes

    async def rotate_keys(self) -> tuple[int, int]:
        """Re-seal every stored secret under the newest key: (re-sealed, already current)."""
        done = current = 0
        for table, user_id, sealed in await self.storage.sealed_secrets():
            if not self.box.needs_reseal(sealed):
                current += 1
                continue
            fresh = self.box.seal(user_id, self.box.open(user_id, sealed))
            if await self.storage.replace_sealed(table, user_id, sealed, fresh):
                done += 1
        return done, current
