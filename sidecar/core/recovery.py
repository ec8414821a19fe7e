"""Recovery codes: 20 a user, shown once, stored only as keyed hashes (HMAC-SHA256).

A code is ten characters from an alphabet without look-alikes, shown as ``abcde-fghjk``;
it is accepted with or without the dash, with ASCII spaces, and in any case; nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

COUNT = 20
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no i, l, o, 0, 1
LENGTH = 10
MAX_TYPED = 32  # characters of a typed code, separators included
_TYPED_CODE = re.compile(f"[{ALPHABET}{ALPHABET.upper()} -]+")  # no tabs, newlines, NBSP


def new_codes(count: int = COUNT) -> list[str]:
    """Fresh, distinct codes formatted for display."""
    codes: set[str] = set()
    while len(codes) < count:
        raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        codes.add(f"{raw[:5]}-{raw[5:]}")
    return sorted(codes)


def normalize(text: str) -> str | None:
    """The canonical form of a typed code, or None when it cannot be a recovery code.

    Only the alphabet (in either case), ``-`` and ASCII spaces may be typed, at most
    ``MAX_TYPED`` characters, and ``LENGTH`` characters of the alphabet must remain.
    """
    if len(text) > MAX_TYPED or not _TYPED_CODE.fullmatch(text):
        return None
    cleaned = text.replace("-", "").replace(" ", "").lower()
    return cleaned if len(cleaned) == LENGTH else None


def code_hash(key: str, user_id: str, code: str) -> str:
    """Keyed hash of a normalized code, bound to its user so a row cannot serve another user."""
    message = f"{user_id}\x00{code}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
