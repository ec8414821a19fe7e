"""TOTP (RFC 6238) behind a small, strictly typed API.

``match_step`` returns the time step a code belongs to, so that the caller can record it
and refuse the same (or an older) step later: each code is accepted once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote

import pyotp

SECRET_BYTES = 20  # 160 bits, as RFC 4226 recommends
MAX_TYPED = 32  # characters of a typed code, spaces included
_TYPED_CODE = re.compile(r"[0-9 ]+")  # ASCII digits and U+0020 only: no tabs, newlines, NBSP
_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


@dataclass(frozen=True, slots=True)
class TotpParams:
    digits: int = 6
    period: int = 30
    algorithm: str = "SHA1"
    skew: int = 1


def new_secret() -> str:
    """A fresh base32 secret of 160 random bits (32 characters, no padding)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def normalize_secret(text: str) -> str:
    """Manual-entry keys are case-insensitive and may contain spaces."""
    return re.sub(r"\s", "", text).upper()


def grouped(secret: str) -> str:
    """The key as shown for manual entry: groups of four characters."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def parse_code(text: str, digits: int) -> str | None:
    """The typed code without its spaces, or None when it is not exactly ``digits`` digits.

    Only ASCII digits and ASCII spaces (U+0020) may be typed, at most ``MAX_TYPED``
    characters: tabs, newlines, no-break spaces, dashes, signs and non-ASCII digits refuse it.
    """
    if len(text) > MAX_TYPED or not _TYPED_CODE.fullmatch(text):
        return None
    cleaned = text.replace(" ", "")
    return cleaned if len(cleaned) == digits else None


def _totp(secret: str, params: TotpParams) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=params.digits, digest=_DIGESTS[params.algorithm],
                      interval=params.period)


def code_at(secret: str, for_time: float, params: TotpParams = TotpParams()) -> str:
    """The code an authenticator shows at ``for_time`` (used by tests and the demo)."""
    return _totp(secret, params).at(int(for_time))


def match_step(secret: str, code: str, now: float, params: TotpParams = TotpParams(),
               after_step: int = -1) -> int | None:
    """The time step within ±skew whose code equals ``code`` and is later than ``after_step``.

    Every candidate is compared in constant time, and all of them are checked, so the time
    taken does not say which step matched.
    """
    parsed = parse_code(code, params.digits)
    if parsed is None:
        return None
    totp = _totp(secret, params)
    current = int(now) // params.period
    found: int | None = None
    for step in range(current - params.skew, current + params.skew + 1):
        if step < 0:
            continue
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected.encode(), parsed.encode()) and step > after_step:
            found = step if found is None else found
    return found


def provisioning_uri(secret: str, account: str, issuer: str, params: TotpParams = TotpParams()) -> str:
    """The ``otpauth://`` URI a QR code carries; label ``Issuer:account``."""
    label = quote(f"{issuer}:{account}", safe=":@")
    query = f"secret={secret}&issuer={quote(issuer, safe='')}"
    if params.algorithm != "SHA1":
        query += f"&algorithm={params.algorithm}"
    if params.digits != 6:
        query += f"&digits={params.digits}"
    if params.period != 30:
        query += f"&period={params.period}"
    return f"otpauth://totp/{label}?{query}"
