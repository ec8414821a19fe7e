"""A software authenticator for tests: real WebAuthn answers without a browser.

It makes what a security key makes (authenticator data, a "none" attestation object, ES256
signatures over ``authData || SHA-256(clientDataJSON)``) with ``cryptography`` and ``cbor2``,
from the options a page hands out, so the server side (py_webauthn) checks real answers. Knobs
let a test answer for another RP ID or origin, or set the signature counter.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def page_options(page: str, kind: str) -> dict[str, Any]:
    """The options a page carries in ``data-options`` of its ``data-webauthn=kind`` form."""
    match = re.search(rf'data-webauthn="{kind}" data-options="([^"]*)"', page)
    assert match, f"no data-webauthn={kind} form on the page"
    return dict(json.loads(html.unescape(match.group(1))))


@dataclass
class SoftKey:
    """One credential on a software authenticator."""

    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    private: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    counter: int = 0
    count_up: bool = True  # False: the counter stays 0 (allowed: keys without a counter)

    def _cose(self) -> bytes:
        numbers = self.private.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")})

    def _client_data(self, kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin,
                           "crossOrigin": False}).encode()

    def register(self, options: dict[str, Any], origin: str, rp_id: str | None = None) -> str:
        """The JSON answer to ``navigator.credentials.create(options)``."""
        rp = rp_id or options["rp"]["id"]
        client = self._client_data("webauthn.create", options["challenge"], origin)
        attested = (bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id
                    + self._cose())
        auth = hashlib.sha256(rp.encode()).digest() + bytes([UP | UV | AT]) + struct.pack(
            ">I", self.counter) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth})
        return json.dumps({"id": b64(self.credential_id), "rawId": b64(self.credential_id),
                           "type": "public-key", "clientExtensionResults": {},
                           "response": {"clientDataJSON": b64(client),
                                        "attestationObject": b64(attestation),
                                        "transports": ["usb"]}})

    def assert_(self, options: dict[str, Any], origin: str, rp_id: str | None = None,
                counter: int | None = None, client_data: bytes | None = None) -> str:
        """The JSON answer to ``navigator.credentials.get(options)`` (the counter moves up
        first, unless ``counter`` is given or the key counts nothing)."""
        rp = rp_id or options["rpId"]
        if counter is not None:
            self.counter = counter
        elif self.count_up:
            self.counter += 1
        client = client_data or self._client_data("webauthn.get", options["challenge"], origin)
        auth = hashlib.sha256(rp.encode()).digest() + bytes([UP | UV]) + struct.pack(
            ">I", self.counter)
        signature = self.private.sign(auth + hashlib.sha256(client).digest(),
                                      ec.ECDSA(hashes.SHA256()))
        return json.dumps({"id": b64(self.credential_id), "rawId": b64(self.credential_id),
                           "type": "public-key", "clientExtensionResults": {},
                           "response": {"clientDataJSON": b64(client),
                                        "authenticatorData": b64(auth),
                                        "signature": b64(signature), "userHandle": None}})
