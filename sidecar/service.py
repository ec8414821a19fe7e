"""The account operations behind the pages: enroll, verify a code, disable, new codes.

Depends only on the Storage interface, the config and an injected clock. Keeps a brief
in-memory cache of each user's enrollment state (enrolled? which generation?) so the hot
path does not read storage on every request; changes made here update it at once.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from collections.abc import Callable

from sidecar import recovery, totp
from sidecar.config import Config
from sidecar.errors import StorageUnavailable
from sidecar.storage import Storage, UserState

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
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        self.params = totp.TotpParams(config.totp.digits, config.totp.period,
                                      config.totp.algorithm, config.totp.skew)
        self._states: dict[str, CachedState] = {}

    # -- the hot path's view ------------------------------------------------------------
    async def cached_state(self, user_id: str) -> CachedState:
        """Enrollment state from a cache of a few seconds, read from storage when stale."""
        now = time.monotonic()
        state = self._states.get(user_id)
        if state is not None and now - state.fetched_at < STATE_CACHE_SECONDS:
            return state
        try:
            user = await self.storage.get_user(user_id)
        except StorageUnavailable:
            if state is None:
                raise
            return state  # fail static: what we last knew stays in force while storage is down
        return self._remember(user, now)

    def _remember(self, user: UserState, now: float | None = None) -> CachedState:
        if len(self._states) >= STATE_CACHE_LIMIT:
            self._states.clear()
        state = CachedState(user.enrolled, user.generation,
                            time.monotonic() if now is None else now)
        self._states[user.user_id] = state
        return state

    def forget(self, user_id: str) -> None:
        self._states.pop(user_id, None)

    async def user(self, user_id: str) -> UserState:
        user = await self.storage.get_user(user_id)
        self._remember(user)
        return user

    # -- enrollment ---------------------------------------------------------------------
    async def pending_secret(self, user_id: str) -> str:
        """The secret being enrolled: the same one on reload until it expires."""
        now = int(self.clock())
        existing = await self.storage.pending_secret(user_id, now)
        if existing is not None:
            return existing
        expires = now + self.config.totp.enrollment_timeout
        return await self.storage.put_pending(user_id, totp.new_secret(), expires, now)

    async def complete_enrollment(self, user_id: str, code: str,
                                  client: str) -> tuple[CheckResult, list[str], int]:
        """Verify a code from the pending secret; on success 2FA is on.

        Returns the result, the new recovery codes (shown once) and the new generation.
        """
        now = int(self.clock())
        user = await self.storage.get_user(user_id)
        if user.locked_until > now:
            return CheckResult(Check.LOCKED, locked_until=user.locked_until), [], 0
        secret = await self.storage.pending_secret(user_id, now)
        step = None if secret is None else totp.match_step(secret, code, now, self.params)
        if secret is None or step is None:
            return await self._failed(user_id, client, now), [], 0
        codes = recovery.new_codes()
        hashes = [recovery.code_hash(self.config.hash_key, user_id, recovery.normalize(c) or "")
                  for c in codes]
        generation = await self.storage.complete_enrollment(user_id, secret, step, hashes, now)
        if generation is None:
            return CheckResult(Check.INVALID), [], 0
        await self.storage.clear_failures(user_id)
        self.forget(user_id)
        log.info("2fa enabled", extra={"event": "enabled", "user": user_id, "client": client})
        return CheckResult(Check.OK, recovery_left=len(codes)), codes, generation

    # -- codes --------------------------------------------------------------------------
    async def check(self, user_id: str, text: str, client: str,
                    allow_recovery: bool = True) -> CheckResult:
        """Accept a current TOTP code (once) or an unused recovery code (once)."""
        now = int(self.clock())
        user = await self.storage.get_user(user_id)
        if not user.enrolled or user.secret is None:
            return CheckResult(Check.NOT_ENROLLED)
        if user.locked_until > now:
            return CheckResult(Check.LOCKED, locked_until=user.locked_until)
        digits = totp.parse_code(text, self.params.digits)
        if digits is not None:
            step = totp.match_step(user.secret, digits, now, self.params, after_step=user.last_step)
            if step is not None and await self.storage.use_step(user_id, user.secret, step):
                await self.storage.clear_failures(user_id)
                log.info("challenge passed", extra={"event": "challenge_passed", "user": user_id,
                                                    "client": client, "method": "totp"})
                return CheckResult(Check.OK, recovery_left=user.recovery_left)
        elif allow_recovery and (normalized := recovery.normalize(text)) is not None:
            digest = recovery.code_hash(self.config.hash_key, user_id, normalized)
            if await self.storage.use_recovery_code(user_id, digest, now):
                await self.storage.clear_failures(user_id)
                left = (await self.storage.get_user(user_id)).recovery_left
                log.info("recovery code used", extra={"event": "recovery_code_used",
                                                      "user": user_id, "client": client,
                                                      "remaining": left})
                return CheckResult(Check.OK, used_recovery=True, recovery_left=left)
        return await self._failed(user_id, client, now)

    async def _failed(self, user_id: str, client: str, now: int) -> CheckResult:
        limits = self.config.throttle
        failures = await self.storage.add_failure(user_id, client, now, limits.window)
        log.info("code refused", extra={"event": "challenge_failed", "user": user_id,
                                        "client": client, "failures": failures})
        if failures >= limits.max_failures:
            until = now + limits.lockout
            await self.storage.lock(user_id, until)
            log.warning("user locked", extra={"event": "locked", "user": user_id,
                                              "client": client, "until": until})
            return CheckResult(Check.LOCKED, locked_until=until)
        return CheckResult(Check.INVALID)

    async def disable(self, user_id: str, actor: str = "user", client: str = "") -> bool:
        changed = await self.storage.disable(user_id)
        self.forget(user_id)
        if changed:
            log.info("2fa disabled", extra={"event": "disabled" if actor == "user" else "admin_reset",
                                            "user": user_id, "client": client})
        return changed

    async def new_recovery_codes(self, user_id: str, client: str) -> list[str]:
        codes = recovery.new_codes()
        hashes = [recovery.code_hash(self.config.hash_key, user_id, recovery.normalize(c) or "")
                  for c in codes]
        await self.storage.replace_recovery_codes(user_id, hashes)
        log.info("recovery codes regenerated", extra={"event": "codes_regenerated",
                                                      "user": user_id, "client": client})
        return codes
