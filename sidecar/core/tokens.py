"""Every signed value the sidecar hands out, through one ``Signer(keys, namespace)``.

One signer, a namespace per use (as datasette does), so a value signed for one purpose never
passes for another: the 2FA pass (``PASS``), the remembered-device cookie (``DEVICE``), the
password-reset grant (``RESET_GRANT``), and the CSRF tokens of the pages (``CSRF``) and of the
anonymous reset gate (``RESET_CSRF``). Keys are a list, oldest first: the newest signs, any of
them verifies, so a key can be rotated in without ending every session at once.

A signed value carries a short list of fields (``dumps``); ``loads`` gives them back only
when the signature holds and every field has the type asked for: anything else is None,
"not verified", never an error. A CSRF token is a MAC of what it is bound to (``mac``).

The 2FA pass says: *user U passed a code at time I while logged in to the app with the
credential whose fingerprint is F, when U's 2FA generation was G*. A new app login changes F,
so it needs a new code; disabling or resetting 2FA changes G, so every pass of U ends.
Verified pass values are kept in a small in-memory map so the hot path checks a signature
once per cookie value, not once per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import itsdangerous

PASS = "totp-sidecar.2fa-cookie"
DEVICE = "totp-sidecar.device-cookie"
RESET_GRANT = "totp-sidecar.reset-grant"
CSRF = "totp-sidecar.csrf"
RESET_CSRF = "totp-sidecar.reset-csrf"
MAX_LENGTH = 4096  # characters of a signed value; longer is not even looked at
MAX_MAC = 128
PASS_CACHE_LIMIT = 4096  # checked 2FA cookies remembered; the answer cache serves returning users

#: A field type for ``Signer.loads``: ``str``, ``int`` (never a bool), ``bool``, or ``list``
#: (of strings).
Field = type


def _has_type(value: Any, kind: Field) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, kind)


class Signer:
    """Signs and verifies values under one namespace with a list of keys, oldest first."""

    def __init__(self, keys: tuple[str, ...], namespace: str, max_length: int = MAX_LENGTH) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self.namespace = namespace
        self.max_length = max_length
        self._serializer = itsdangerous.URLSafeSerializer(list(keys), salt=namespace)
        self._mac = itsdangerous.Signer(list(keys), salt=namespace, digest_method=hashlib.sha256)

    def dumps(self, *fields: Any) -> str:
        """``fields`` (strings, integers, booleans, lists of strings) as one signed value."""
        return str(self._serializer.dumps(list(fields)))

    def loads(self, value: str, *shape: Field) -> tuple[Any, ...] | None:
        """The fields of ``value`` when it is signed by one of the keys and has ``shape``."""
        if not value or len(value) > self.max_length:
            return None
        try:
            data = self._serializer.loads(value)
        except (itsdangerous.BadSignature, ValueError, TypeError, UnicodeError):
            return None
        if not isinstance(data, list) or len(data) != len(shape):
            return None
        if not all(_has_type(item, kind) for item, kind in zip(data, shape, strict=True)):
            return None
        return tuple(data)

    def mac(self, *parts: str) -> str:
        """A token bound to ``parts`` (which are not in it), signed with the newest key."""
        return self._mac.get_signature(_joined(parts)).decode("ascii")

    def mac_valid(self, token: str, *parts: str) -> bool:
        """Whether ``token`` is the MAC of ``parts`` under any of the keys."""
        if not token or len(token) > MAX_MAC:
            return False
        return self._mac.verify_signature(_joined(parts), token)


def _joined(parts: tuple[str, ...]) -> bytes:
    return "\x00".join(parts).encode("utf-8", "surrogatepass")


def fingerprint(key: str, credential: str) -> str:
    """A short keyed digest of the primary session credential (never stored in clear)."""
    digest = hmac.new(key.encode(), credential.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:18]).decode("ascii")


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


_PASS_SHAPE = (str, str, int, int, int, str, str, list, int)


class PassCodec:
    """2FA passes signed under ``PASS``; values already checked are remembered (hot path)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.signer = Signer(keys, PASS)
        self._cache: dict[str, Pass | None] = {}

    def dumps(self, item: Pass) -> str:
        return self.signer.dumps(item.user, item.fingerprint, item.issued_at, item.seen_at,
                                 item.generation, item.email, item.name, list(item.groups),
                                 item.code_at)

    def loads(self, value: str) -> Pass | None:
        """The pass in ``value``, or None when it is missing, malformed or not signed by us."""
        if value in self._cache:
            return self._cache[value]
        item = self._decode(value)
        if len(self._cache) >= PASS_CACHE_LIMIT:
            self._cache.clear()
        self._cache[value] = item
        return item

    def _decode(self, value: str) -> Pass | None:
        fields = self.signer.loads(value, *_PASS_SHAPE)
        if fields is None or not fields[0]:
            return None
        user, fp, issued, seen, generation, email, name, groups, code_at = fields
        return Pass(user, fp, issued, seen, generation, email, name, tuple(groups), code_at)


def pass_is_fresh(item: Pass, now: float, max_age: int, idle_timeout: int) -> bool:
    """Within the cookie's lifetime, and (when configured) used recently enough."""
    if item.issued_at > now + 60 or now - item.issued_at > max_age:
        return False
    return not (idle_timeout and now - item.seen_at > idle_timeout)
