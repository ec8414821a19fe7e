"""Brute-force limits on codes, over the ``Attempts`` storage role, the audit trail and a clock.

Every code is compared only after storage reserved the attempt as a failure (``reserve``:
throttling first, then the comparison), so however many guesses arrive at once, at most
``throttle.max_failures`` per window are compared. A right code clears the reservation
(``passed``); a wrong one stays counted (``failed``), and at the limit the user is locked.
Failures count in a scope: ``signin`` (the user's own sign-in; too many lock the user) or
``reset`` (the public password-reset gate; too many close the gate for that account only).
"""

from __future__ import annotations

import logging
from typing import Any

from sidecar.audit import Audit
from sidecar.config import ThrottleConfig
from sidecar.storage import SIGNIN, Attempt, Attempts, Scope


class Throttle:
    def __init__(self, attempts: Attempts, limits: ThrottleConfig, audit: Audit) -> None:
        self.attempts = attempts
        self.limits = limits
        self.audit = audit

    async def reserve(self, user_id: str, client: str, now: int, scope: Scope = SIGNIN) -> Attempt:
        """The attempt reserved as a failure (``failure_id``), or refused (None: compare nothing)."""
        return await self.attempts.reserve_attempt(user_id, client, now, self.limits, scope)

    def refused_until(self, attempt: Attempt, scope: Scope, now: int) -> int:
        """Until when a refused reservation keeps refusing: the user's lock, a lockout, a window.

        The failures counted include attempts of other requests still being compared.
        """
        limits = self.limits
        if attempt.locked_until > now:
            return attempt.locked_until
        if attempt.by_user >= limits.max_failures and scope == SIGNIN:
            return now + limits.lockout
        return now + limits.window

    async def failed(self, user_id: str, client: str, now: int, attempt: Attempt,
                     scope: Scope) -> int:
        """A wrong code: the reservation stays as the failure. Until when the user (sign-in),
        the account (reset gate) or the client is now refused; 0 when nobody is.
        """
        limits = self.limits
        detail: dict[str, Any] = {"failures": attempt.by_user}
        if scope != SIGNIN:
            detail["scope"] = scope
        await self.audit("challenge_failed", user_id, client, **detail)
        if attempt.by_user >= limits.max_failures:
            if scope != SIGNIN:
                return now + limits.window  # the gate stays closed; nothing is locked
            until = now + limits.lockout
            await self.attempts.lock(user_id, until)
            await self.audit("locked", user_id, client, logging.WARNING, until=until)
            return until
        if attempt.by_client >= limits.max_failures_per_client:
            await self.audit("client_throttled", user_id, client, logging.WARNING,
                             failures=attempt.by_client)
            return now + limits.window
        return 0

    async def passed(self, user_id: str, scope: Scope, attempt: Attempt) -> None:
        """A right code: the user's failures of ``scope`` up to this reservation end."""
        assert attempt.failure_id is not None
        await self.attempts.clear_failures_upto(user_id, scope, attempt.failure_id)
