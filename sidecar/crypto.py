"""TOTP secrets at rest: AES-256-GCM with the user id as associated data.

A sealed value reads ``v1.<key id>.<base64url(nonce | ciphertext | tag)>``. The user id is
authenticated with it, so a sealed secret copied into another user's row does not open.
Keys are a list, oldest first; the newest seals, any of them opens; ``needs_reseal`` tells
``totp-sidecar keys rotate`` which values to re-encrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sidecar.errors import SecretUnreadable

VERSION = "v1"
NONCE_BYTES = 12


def _derive(key: str) -> bytes:
    return hashlib.sha256(b"totp-sidecar.secret-box\x00" + key.encode()).digest()


def key_id(key: str) -> str:
    return hashlib.sha256(b"totp-sidecar.key-id\x00" + key.encode()).hexdigest()[:8]


class SecretBox:
    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._keys = {key_id(k): AESGCM(_derive(k)) for k in keys}
        self.current = key_id(keys[-1])

    def seal(self, user_id: str, secret: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.current].encrypt(nonce, secret.encode(), user_id.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{VERSION}.{self.current}.{body}"

    def open(self, user_id: str, value: str) -> str:
        try:
            version, kid, body = value.split(".", 2)
            aead = self._keys[kid] if version == VERSION else None
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, KeyError, binascii.Error):
            raise SecretUnreadable("a stored secret was sealed with a key that is not configured"
                                   " (secrets.encryption_keys)") from None
        if aead is None:
            raise SecretUnreadable("a stored secret has an unknown format")
        try:
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], user_id.encode()).decode()
        except InvalidTag:
            raise SecretUnreadable("a stored secret does not belong to this user or was altered"
                                   ) from None

    def needs_reseal(self, value: str) -> bool:
        return not value.startswith(f"{VERSION}.{self.current}.")
