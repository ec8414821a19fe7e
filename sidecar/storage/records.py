"""What storage hands back: plain records, and the scopes failed codes count in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Scope = Literal["signin", "reset"]  # what a failed code counts against
SIGNIN: Scope = "signin"  # the user's own sign-in: failures lock the user
RESET: Scope = "reset"  # the public password-reset gate: failures close the gate only


@dataclass(frozen=True, slots=True)
class Device:
    """A browser the user asked to remember (a second factor for ``max_days``)."""

    device_id: str
    user_id: str
    created_at: int
    last_seen: int
    browser: str


@dataclass(frozen=True, slots=True)
class Event:
    at: int
    event: str
    user_id: str
    client: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Attempt:
    """A code attempt reserved as a failure before the code is compared, or refused.

    ``failure_id`` is the reservation (None: refused, compare nothing); the counts are the
    failures within the window of the user (in the attempt's scope) and of the client (every
    scope), a reservation included; ``locked_until`` is the user's sign-in lock (scope signin).
    """

    failure_id: int | None
    by_user: int
    by_client: int
    locked_until: int = 0


@dataclass(frozen=True, slots=True)
class UserState:
    user_id: str
    secret: str | None = None
    enabled_at: int | None = None
    last_step: int = -1
    generation: int = 0
    locked_until: int = 0
    recovery_left: int = 0

    @property
    def enrolled(self) -> bool:
        """2FA is on: an authenticator app (``secret``), security keys, or both."""
        return self.enabled_at is not None


@dataclass(frozen=True, slots=True)
class Change:
    """One row of the change feed: something about ``user_id`` changed (``kind``; for a
    forgotten device, which one; None: all of them)."""

    seq: int
    user_id: str
    kind: str
    device_id: str | None = None
