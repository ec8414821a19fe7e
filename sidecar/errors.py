"""One exception family for the service; each member says exactly what went wrong."""

from __future__ import annotations


class SidecarError(Exception):
    """Base of every error the sidecar raises on purpose."""


class ConfigError(SidecarError):
    """The configuration has problems; ``problems`` holds one ``key: message`` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class StorageUnavailable(SidecarError):
    """The database cannot be read or written (missing, locked, read-only)."""


class UpstreamUnavailable(SidecarError):
    """The app's "who am I" endpoint could not be reached or answered nonsense."""


class BadForwardedRequest(SidecarError):
    """A forward-auth request whose original method, host or path cannot be known."""
