"""Remember this device: a long-lived signed cookie that vouches for the second factor.

The device cookie names the user, a random device id and the user's 2FA generation. It
never replaces the app's own login: it only counts for the user the app says is logged in.
Turning 2FA off or an admin reset bumps the generation (every device cookie ends) and forgets
the devices; the settings page forgets one device or all. Whether a device is still
remembered is read from storage once and kept with the user's state (``sidecar.states``)
until the change feed says the user's devices changed (on any instance). The device's
"last seen" is therefore when this instance first checked it since.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sidecar.core.tokens import DEVICE, Signer
from sidecar.states import States
from sidecar.storage import Device, Storage

MAX_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class DeviceToken:
    user: str
    device_id: str
    created_at: int
    generation: int


    def value(self, signer: Signer) -> str:
        return signer.dumps(self.user, self.device_id, self.created_at, self.generation)

    @classmethod
    def read(cls, signer: Signer, value: str) -> DeviceToken | None:
        fields = signer.loads(value, str, str, int, int)
        return None if fields is None else cls(*fields)


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Chromium/", "Chromium"), ("Safari/", "Safari"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("Linux", "Linux"))


def describe_browser(user_agent: str) -> str:
    """"Firefox on Linux" from a User-Agent header; only well-known names, never the raw text."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), "A browser")
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), "")
    return f"{browser} on {system}" if system else browser


class Devices:
    def __init__(self, storage: Storage, keys: tuple[str, ...], max_days: int,
                 states: States) -> None:
        self.storage = storage
        self.signer = Signer(keys, DEVICE, max_length=MAX_LENGTH)
        self.max_age = max_days * 86400
        self.states = states

    async def remember(self, user: str, generation: int, user_agent: str, now: int) -> str:
        """A new remembered device for the user; the cookie value."""
        device_id = secrets.token_urlsafe(18)
        browser = describe_browser(re.sub(r"[^\x20-\x7e]", "", user_agent)[:512])
        await self.storage.add_device(Device(device_id, user, now, now, browser))
        return DeviceToken(user, device_id, now, generation).value(self.signer)

    async def vouches(self, value: str, user: str, generation: int, now: float) -> bool:
        """Whether the cookie ``value`` is a remembered device of ``user`` at ``generation``."""
        token = DeviceToken.read(self.signer, value)
        if token is None or token.user != user or token.generation != generation:
            return False
        if not 0 <= now - token.created_at <= self.max_age:
            return False
        known = self.states.device(user, token.device_id)
        if known is not None:
            return known
        before = self.states.device_token()  # a change meanwhile: the answer is not kept
        known = await self.storage.device_seen(user, token.device_id, int(now))
        self.states.note_device(before, user, token.device_id, known)
        return known

    async def forget(self, user: str, device_id: str | None = None) -> int:
        try:
            return await self.storage.forget_devices(user, device_id)
        finally:
            self.states.forget(user)

    def device_id(self, value: str) -> str | None:
        token = DeviceToken.read(self.signer, value)
        return token.device_id if token else None
