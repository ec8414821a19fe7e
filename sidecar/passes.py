"""The 2FA pass of an app session: issued after a code, checked on every request, refreshed.

A pass (``sidecar.core.tokens.Pass``, signed into the 2FA cookie) holds for one user and one
app session: it names the keyed fingerprint of the app's session cookies, so a new app login
needs a new code, and the user's 2FA generation, so turning 2FA off or a reset ends it. It
names the user and the session only: e-mail, name and groups always come from the app's
current answer, never from the cookie.
"""

from __future__ import annotations

import hmac

from sidecar.config import CookieConfig
from sidecar.core.clock import Clock
from sidecar.core.request import Reading
from sidecar.core.tokens import Pass, PassCodec, fingerprint, pass_is_fresh

REFRESH_AFTER = 60  # seconds between idle-timeout refreshes of a 2FA cookie


class Passes:
    def __init__(self, settings: CookieConfig, signing_keys: tuple[str, ...], hash_key: str,
                 clock: Clock) -> None:
        self.settings = settings
        self.codec = PassCodec(signing_keys)
        self.hash_key = hash_key
        self.clock = clock

    def fingerprint(self, session_key: str) -> str:
        """The keyed digest of an app session's cookies (or of an Authorization header)."""
        return fingerprint(self.hash_key, session_key)

    def valid(self, reading: Reading, user: str, generation: int) -> Pass | None:
        """The request's 2FA cookie, when it is fresh, bound to this app session, for ``user``
        and of the user's current 2FA generation."""
        value = reading.cookie(self.settings.name)
        if not value:
            return None
        item = self.codec.loads(value)
        if item is None:
            return None
        if not pass_is_fresh(item, self.clock(), self.settings.max_age, self.settings.idle_timeout):
            return None
        if not hmac.compare_digest(item.fingerprint, self.fingerprint(reading.session_key)):
            return None
        if not hmac.compare_digest(item.user.encode(), user.encode()):
            return None
        return item if item.generation == generation else None

    def issue(self, user: str, session_key: str, generation: int, code_typed: bool = True) -> str:
        """A pass for this app session; ``code_typed`` False when a remembered device vouched."""
        now = int(self.clock())
        return self.codec.dumps(Pass(user, self.fingerprint(session_key), now, now, generation,
                                     code_at=now if code_typed else 0))

    def refreshed(self, item: Pass) -> str | None:
        """A re-signed pass with a new last-seen time, when an idle timeout needs it."""
        now = int(self.clock())
        if not self.settings.idle_timeout or now - item.seen_at < REFRESH_AFTER:
            return None
        return self.codec.dumps(Pass(item.user, item.fingerprint, item.issued_at, now,
                                     item.generation, code_at=item.code_at))

    def reusable_until(self, item: Pass) -> float:
        """Until when (sidecar clock) an answer resting on ``item`` may be reused: its expiry,
        or its next idle-timeout refresh, which a reused answer would not carry."""
        end = self.expiry(item)
        if self.settings.idle_timeout:
            end = min(end, float(item.seen_at + REFRESH_AFTER))
        return end

    def expiry(self, item: Pass) -> float:
        """When ``item`` stops being fresh, on the sidecar's clock."""
        end = item.issued_at + self.settings.max_age
        if self.settings.idle_timeout:
            end = min(end, item.seen_at + self.settings.idle_timeout)
        return float(end)
