"""The signed 2FA cookie, CSRF tokens and the fingerprint of the primary session credential.

The 2FA cookie says: *user U passed a code at time I while logged in to the app with the
credential whose fingerprint is F, when U's 2FA generation was G*. A new app login changes F,
so it needs a new code; disabling or resetting 2FA changes G, so every cookie of U ends.

Verified cookie values are kept in a small in-memory map so the hot path checks a
signature once per cookie value, not once per request. A bad signature simply means
"not verified", never an error page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

COOKIE_SALT = "totp-sidecar.2fa-cookie"
CSRF_SALT = b"totp-sidecar.csrf"
MAX_COOKIE_LENGTH = 4096
CACHE_LIMIT = 16_384


@dataclass(frozen=True, slots=True)
class Pass:
    """What a valid 2FA cookie says."""

    user: str
    fingerprint: str
    issued_at: int
    seen_at: int
    generation: int
    email: str = ""
    name: str = ""
    groups: tuple[str, ...] = ()
    code_at: int = 0  # when a code was typed for this pass (0: from a remembered device)


def fingerprint(key: str, credential: str) -> str:
    """A short keyed digest of the primary session credential (never stored in clear)."""
    digest = hmac.new(key.encode(), credential.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:18]).decode("ascii")


class PassCodec:
    """Signs and reads 2FA cookies with a list of keys, oldest first, the newest signing."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._serializer = URLSafeSerializer(list(keys), salt=COOKIE_SALT)
        self._cache: dict[str, Pass | None] = {}

    def dumps(self, item: Pass) -> str:
        payload = [item.user, item.fingerprint, item.issued_at, item.seen_at, item.generation,
                   item.email, item.name, list(item.groups), item.code_at]
        return str(self._serializer.dumps(payload))

    def loads(self, value: str) -> Pass | None:
        """The pass in ``value``, or None when it is missing, malformed or not signed by us."""
        if value in self._cache:
            return self._cache[value]
        item = self._decode(value)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[value] = item
        return item

    def _decode(self, value: str) -> Pass | None:
        if not value or len(value) > MAX_COOKIE_LENGTH:
            return None
        try:
            data = self._serializer.loads(value)
        except (BadSignature, ValueError, TypeError, UnicodeError):
            return None
        if not (isinstance(data, list) and len(data) == 9):
            return None
        user, fp, issued, seen, generation, email, name, groups, code_at = data
        if not all(isinstance(s, str) for s in (user, fp, email, name)) or not user:
            return None
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            return None
        numbers = (issued, seen, generation, code_at)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            return None
        return Pass(user, fp, issued, seen, generation, email, name, tuple(groups), code_at)


def pass_is_fresh(item: Pass, now: float, max_age: int, idle_timeout: int) -> bool:
    """Within the cookie's lifetime, and (when configured) used recently enough."""
    if item.issued_at > now + 60 or now - item.issued_at > max_age:
        return False
    return not (idle_timeout and now - item.seen_at > idle_timeout)


def csrf_token(keys: tuple[str, ...], user: str, session_fp: str) -> str:
    """A token bound to the user and the primary session; it does not change within a session."""
    return _csrf(keys[-1], user, session_fp)


def csrf_valid(keys: tuple[str, ...], user: str, session_fp: str, token: str) -> bool:
    if not token or len(token) > 128:
        return False
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(_csrf(key, user, session_fp), token)
    return ok


def _csrf(key: str, user: str, session_fp: str) -> str:
    message = f"{user}\x00{session_fp}".encode("utf-8", "surrogatepass")
    return hmac.new(key.encode() + CSRF_SALT, message, hashlib.sha256).hexdigest()
