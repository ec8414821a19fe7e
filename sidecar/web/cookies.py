"""Every cookie the sidecar sets, written by one builder: HttpOnly always, SameSite, Secure over https.

The 2FA cookie (``cookie.*``), the remembered device (``remember_device.*``), the set-up's
browser binding, new recovery codes on their way to their page and the reset gate's two
cookies are all built by ``cookie_line``; ``Cookies`` knows their names, lifetimes and paths
from the config, and when ``Secure`` applies (``cookie.secure``).
"""

from __future__ import annotations

from sidecar.config import Config
from sidecar.core.request import CODES_COOKIE, ENROLL_COOKIE, RESET_GRANT_COOKIE, RESET_NONCE_COOKIE

#: How long new recovery codes can be shown again (a reload) after the POST that made them.
CODES_SECONDS = 900


def cookie_line(name: str, value: str, max_age: int | None, secure: bool, path: str = "/",
                same_site: str = "Lax") -> str:
    """The one Set-Cookie builder; ``max_age`` None: a session cookie (gone with the browser)."""
    parts = [f"{name}={value}", f"Path={path}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    parts += ["HttpOnly", f"SameSite={same_site}"]
    return "; ".join(parts + (["Secure"] if secure else []))


class Cookies:
    def __init__(self, config: Config) -> None:
        self.config = config

    def secure(self, scheme: str) -> bool:
        """Whether cookies get ``Secure``: always, never, or (auto) when the page is https."""
        mode = self.config.cookie.secure
        return mode == "always" or (mode == "auto" and scheme == "https")

    def set_pass(self, value: str, scheme: str) -> str:
        settings = self.config.cookie
        return cookie_line(settings.name, value, settings.max_age, self.secure(scheme))

    def clear_pass(self, scheme: str) -> str:
        return cookie_line(self.config.cookie.name, "", 0, self.secure(scheme))

    def set_device(self, value: str, scheme: str) -> str:
        remember = self.config.remember_device
        return cookie_line(remember.cookie_name, value, remember.max_days * 86400, self.secure(scheme))

    def set_enroll_nonce(self, nonce: str, scheme: str) -> str:
        """Binds set-up to this browser when the app session has no cookie: for the set-up
        page only, never sent cross-site, as long as a pending secret lasts."""
        return cookie_line(ENROLL_COOKIE, nonce, self.config.totp.enrollment_timeout,
                           self.secure(scheme), path=f"{self.config.prefix}/enroll",
                           same_site="Strict")

    def set_codes(self, sealed: str, scheme: str) -> str:
        """New recovery codes (sealed) on their way from the POST that made them to the page
        that shows them: that page only, never sent cross-site, a quarter of an hour at most."""
        return cookie_line(CODES_COOKIE, sealed, CODES_SECONDS, self.secure(scheme),
                           path=f"{self.config.prefix}/recovery-codes", same_site="Strict")

    def clear_codes(self, scheme: str) -> str:
        return cookie_line(CODES_COOKIE, "", 0, self.secure(scheme),
                           path=f"{self.config.prefix}/recovery-codes", same_site="Strict")

    def set_reset_nonce(self, nonce: str, scheme: str) -> str:
        """The reset gate's anonymous CSRF nonce: for the gate page only, never sent cross-site."""
        return cookie_line(RESET_NONCE_COOKIE, nonce, None, self.secure(scheme),
                           path=f"{self.config.prefix}/reset", same_site="Strict")

    def set_reset_grant(self, value: str, scheme: str) -> str:
        return cookie_line(RESET_GRANT_COOKIE, value, self.config.password_reset.grant_seconds,
                           self.secure(scheme))

    def clear_reset_grant(self, scheme: str) -> str:
        return cookie_line(RESET_GRANT_COOKIE, "", 0, self.secure(scheme))

    def sign_out_lines(self, scheme: str) -> list[str]:
        """Set-Cookie lines that end the sidecar's cookies and the app's session cookies
        (``primary.session_cookies``, on ``Path=/``) in this browser."""
        secure = self.secure(scheme)
        config = self.config
        lines = [self.clear_pass(scheme), self.clear_reset_grant(scheme),
                 cookie_line(config.remember_device.cookie_name, "", 0, secure),
                 cookie_line(ENROLL_COOKIE, "", 0, secure, path=f"{config.prefix}/enroll",
                             same_site="Strict"), self.clear_codes(scheme)]
        own = {config.cookie.name, config.remember_device.cookie_name, ENROLL_COOKIE,
               RESET_GRANT_COOKIE}
        lines += [cookie_line(name, "", 0, secure) + "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
                  for name in config.primary.session_cookies if name not in own]
        return lines
