"""The X-OTP burst window: a code accepted for an API credential serves its further calls.

For ``api.burst_seconds`` after a code passed, the same credential (the Authorization header),
user, code and 2FA generation pass without another check, on every instance: the window is
stored (``bursts`` table), keyed by a keyed digest of those four, never by the credential
itself. Each instance keeps the windows it has seen in memory first, so a burst costs one
storage read per instance at most; a reset or disable (a new generation) ends every window.
"""

from __future__ import annotations

from collections import OrderedDict

from sidecar.core.tokens import fingerprint
from sidecar.storage import Bursts as BurstStore

MEMORY_LIMIT = 10_000


class Bursts:
    def __init__(self, storage: BurstStore, hash_key: str) -> None:
        self.storage = storage
        self.hash_key = hash_key
        self._until: OrderedDict[str, float] = OrderedDict()

    def key(self, authorization: str, user: str, code: str, generation: int) -> str:
        """The window's name: a keyed digest, so storage never holds a credential or code."""
        return fingerprint(self.hash_key, "\0".join(("burst", authorization, user, code,
                                                     str(generation))))

    async def passes(self, key: str, now: float) -> bool:
        """Whether the window ``key`` is open: memory first, then storage."""
        until = self._until.get(key)
        if until is None:
            stored = await self.storage.burst_until(key, int(now))
            if stored is None:
                return False
            until = self._keep(key, float(stored))
        return now < until

    async def open(self, key: str, seconds: int, now: float) -> None:
        """A code passed: the window stays open for ``seconds`` (stored for other instances)."""
        until = int(now) + seconds
        await self.storage.add_burst(key, until, int(now))
        self._keep(key, float(until))

    def _keep(self, key: str, until: float) -> float:
        self._until[key] = until
        if len(self._until) > MEMORY_LIMIT:
            self._until.popitem(last=False)
        return until
