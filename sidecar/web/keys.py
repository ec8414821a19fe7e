"""Security keys and passkeys on the pages: what the challenge and the settings page show and
how a key's answer on the challenge is judged (``sidecar.passkeys`` does the protocol; the
settings forms that add, rename and remove keys: ``sidecar.web.keyforms``).

The ceremony needs JavaScript: ``static/webauthn.js`` (served by the sidecar itself, under the
strict CSP) reads the options the page carries in a ``data-options`` attribute, asks the
browser, and posts the answer in an ordinary form with its CSRF token. So an answer comes in
like any code: read once by the door, judged by the one decision, CSRF and same-site checked
by ``Pages.form``, throttled before it is verified. Without JavaScript the code and recovery
code ways keep working.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlencode

from sidecar.accounts import Check, CheckResult
from sidecar.errors import StorageUnavailable
from sidecar.passkeys import KeyCheck, KeyResult, RelyingParty, relying_party, usable_here
from sidecar.storage import UserState
from sidecar.web.i18n import gettext as _
from sidecar.web.i18n import lazy_gettext as _l
from sidecar.web.render import Visit, attempts_left, local_time, lockout_message
from sidecar.wiring import Parts

MODES = ("key", "totp", "recovery")
KEY_NOTICES = {
    "key_added": _l("Your security key was added."),
    "key_renamed": _l("The security key was renamed."),
    "key_removed": _l("The security key was removed."),
    "app_added": _l("Your authenticator app was added. Your recovery codes stay the same."),
}


def choose_mode(asked: str, has_app: bool, has_keys: bool) -> str:
    """The way the challenge offers: the one asked for when the user has it; else a key
    first, then the app, then a recovery code."""
    if asked == "recovery" or (asked == "key" and has_keys) or (asked == "totp" and has_app):
        return asked
    return "key" if has_keys else "totp" if has_app else "recovery"


class KeyViews:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.passkeys = parts.passkeys
        self.prefix = parts.config.prefix
        self.rp_name = parts.config.branding.product_name or parts.config.totp.issuer

    def rp(self, visit: Visit) -> RelyingParty:
        """The app's host as the door read it is the RP ID; its origin is the expected one."""
        return relying_party(visit.scheme, visit.host, self.rp_name)

    def usable(self, visit: Visit) -> bool:
        """Whether keys can be used on this page's host (a host name, not an IP address)."""
        return usable_here(self.rp(visit))

    def session(self, visit: Visit) -> str:
        return self.parts.passes.fingerprint(visit.reading.session_key)

    # -- the challenge -------------------------------------------------------------------------
    async def challenge_context(self, visit: Visit, user: UserState, mode: str, has_keys: bool,
                                base: dict[str, str]) -> dict[str, Any]:
        """What the challenge shows for ``mode``: the key's options, the other ways as links."""
        ways = []
        for way, label in (("key", _("Use your security key")),
                           ("totp", _("Use your authenticator app")),
                           ("recovery", _("Switch to recovery code"))):
            if way != mode and (way == "recovery" or (way == "key" and has_keys)
                                or (way == "totp" and user.secret is not None)):
                ways.append({"label": label,
                             "url": f"{self.prefix}/challenge?" + urlencode(base | {"method": way})})
        options = ""
        if mode == "key":
            options = await self.passkeys.authentication_options(
                visit.user, self.session(visit), self.rp(visit)) or ""
        return {"ways": ways, "key_options": options}

    async def check(self, visit: Visit, answer: str) -> tuple[CheckResult, str]:
        """A key's answer on the challenge, as a code check's result and its error text."""
        result = await self.passkeys.authenticate(visit.user, self.session(visit), answer,
                                                  self.rp(visit), visit.client)
        self.parts.metrics.key_checked(result.check.value)
        if result.check is KeyCheck.OK:
            return CheckResult(Check.OK), ""
        if result.check is KeyCheck.LOCKED:
            return (CheckResult(Check.LOCKED, locked_until=result.locked_until),
                    lockout_message(result.locked_until, self.parts.clock()))
        text = self.refusal(result)
        more = attempts_left(result.failures, self.parts.config.throttle.max_failures)
        return CheckResult(Check.INVALID, failures=result.failures), f"{text} {more}".strip()

    @staticmethod
    def refusal(result: KeyResult) -> str:
        if result.check is KeyCheck.DUPLICATE:
            return _("This security key is registered already.")
        if result.check is KeyCheck.NO_CHALLENGE:
            return _("The request for your security key ran out or was used already. Try again.")
        return _("Your security key's answer was not accepted. Try again, or use another way "
                 "to sign in.")

    # -- settings --------------------------------------------------------------------------------
    async def _options(self, making: Awaitable[str | None]) -> str:
        """Options made for a ceremony ("" when storage takes no writes: the page still shows
        what is read)."""
        try:
            return await making or ""
        except StorageUnavailable:
            self.parts.metrics.storage_error()
            return ""

    async def settings_context(self, visit: Visit, user: UserState,
                               confirmed: bool) -> dict[str, Any]:
        """``confirmed``: the session may add a key now (2FA off, or a factor proved lately)."""
        keys = await self.passkeys.keys(visit.user)
        session, rp = self.session(visit), self.rp(visit)
        here = usable_here(rp)
        options = confirm = ""
        if here and confirmed and (visit.verified or not user.enrolled):
            options = await self._options(self.passkeys.registration_options(
                visit.user, visit.account, session, rp))
        if here and keys and visit.verified:  # settings' confirmations may take a key's answer
            confirm = await self._options(self.passkeys.authentication_options(
                visit.user, session, rp))
        return {"keys": [{"id": k.credential_id, "name": k.name, "added": local_time(k.created_at),
                          "used": local_time(k.last_used)} for k in keys],
                "register_options": options, "confirm_options": confirm, "keys_here": here,
                "last_key": user.secret is None and len(keys) == 1}
