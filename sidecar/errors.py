"""One exception family for the service; each member says exactly what went wrong.

::

    SidecarError
    ├── ConfigError            problems: list[Problem(key, message)], every one found
    ├── Unavailable            the sidecar cannot decide right now (503, never a guess)
    │   ├── StorageUnavailable     the database is missing, locked, read-only or down
    │   ├── UpstreamUnavailable    the app's who-am-I URL cannot be reached or answers nonsense
    │   └── SecretUnreadable       a stored secret does not open with the configured keys
    ├── BadForwardedRequest    the original method, host or path cannot be known (400)
    └── Ambiguous              real apps could read the request in two ways (never allowed)

This module imports nothing: every layer may raise and catch these.
"""

from __future__ import annotations

from dataclasses import dataclass


class SidecarError(Exception):
    """Base of every error the sidecar raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a configuration: the key path (``cookie.max_age``) and what is wrong."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(SidecarError):
    """The configuration has problems; ``problems`` holds every one, each naming its key."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(self.lines))

    @property
    def lines(self) -> list[str]:
        """One ``key: message`` line per problem (what ``check-config`` prints)."""
        return [str(problem) for problem in self.problems]


class Unavailable(SidecarError):
    """Something the sidecar needs cannot be reached or read: it cannot decide right now."""


class StorageUnavailable(Unavailable):
    """The database cannot be read or written (missing, locked, read-only)."""


class UpstreamUnavailable(Unavailable):
    """The app's "who am I" endpoint could not be reached or answered nonsense."""


class SecretUnreadable(Unavailable):
    """A stored secret cannot be opened with the configured keys (a key was removed?)."""


class BadForwardedRequest(SidecarError):
    """A forward-auth request whose original method, host or path cannot be known."""


class Ambiguous(SidecarError, ValueError):
    """The request can be read in more than one way by real apps; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
