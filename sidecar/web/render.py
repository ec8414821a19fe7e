"""What the pages show: the templates (with the branding and languages installed), what a page
request is (``Visit``), and the words for times and lockouts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from sidecar.branding import support_link
from sidecar.config import Config
from sidecar.core.request import Reading
from sidecar.decision import Verdict
from sidecar.primary import Identity, Resolved
from sidecar.web.i18n import install as install_i18n
from sidecar.web.i18n import ngettext, preload


def templates_dir() -> Path:
    """Templates ship inside the package when installed, beside it in a checkout."""
    package = Path(__file__).parents[1]
    inside = package / "templates"
    return inside if inside.is_dir() else package.parent / "templates"


@dataclass
class Visit:
    """A page request: its one reading, where it was sent, who is logged in, the page verdict."""

    request: Request
    reading: Reading
    scheme: str
    host: str
    resolved: Resolved
    verdict: Verdict | None  # for the sidecar's own pages (None: nobody is logged in)

    @property
    def identity(self) -> Identity | None:
        return self.resolved.identity

    @property
    def client(self) -> str:
        return self.reading.client

    @property
    def user(self) -> str:
        """The user's storage key: the user in this app's users namespace."""
        return self.identity.storage_key if self.identity else ""

    @property
    def verified(self) -> bool:
        """This app session passed 2FA for the user the app says is logged in now."""
        return self.verdict is not None and self.verdict.verified

    @property
    def enrolled(self) -> bool:
        return self.verdict is not None and self.verdict.enrolled

    @property
    def account(self) -> str:
        """The name shown in the authenticator app: e-mail when known, else the user id."""
        if self.identity is None:
            return ""
        return self.identity.email or self.identity.user


def when(timestamp: int | None) -> str:
    if not timestamp:
        return ""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def lockout_message(locked_until: float, now: float) -> str:
    """"Try again in 14 minutes (after 10:25 UTC)": the time left and the moment it ends."""
    minutes = max(1, -int((now - locked_until) // 60))  # rounded up
    end = dt.datetime.fromtimestamp(locked_until, dt.UTC)
    same_day = end.date() == dt.datetime.fromtimestamp(now, dt.UTC).date()
    moment = end.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")
    return ngettext("Too many attempts. Try again in %(num)s minute (after %(time)s), or ask your "
                    "administrator to unlock your account.",
                    "Too many attempts. Try again in %(num)s minutes (after %(time)s), or ask your "
                    "administrator to unlock your account.", minutes, time=moment)


def lockout_words(locked_until: float, now: float) -> str:
    """"Too many attempts. Try again in 14 minutes, …": the time left, in words."""
    minutes = max(1, -int((now - locked_until) // 60))  # rounded up
    return ngettext("Too many attempts. Try again in %(num)s minute, or ask your administrator "
                    "to unlock your account.",
                    "Too many attempts. Try again in %(num)s minutes, or ask your administrator "
                    "to unlock your account.", minutes)


def moment(timestamp: float) -> dict[str, str]:
    """A time for a ``<time datetime>`` element: ISO 8601 (the page script shows it in the
    reader's time zone) and the UTC clock shown without the script."""
    at = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
    return {"iso": at.isoformat().replace("+00:00", "Z"), "text": at.strftime("%H:%M UTC")}


def attempts_left(failures: int, max_failures: int) -> str:
    """From the 3rd failure on: how many attempts are left before a lockout."""
    left = max_failures - failures
    if failures < 3 or left < 1:
        return ""
    return ngettext("%(num)s attempt left before a lockout.",
                    "%(num)s attempts left before a lockout.", left)


def make_templates(config: Config, brand_css: bool) -> Jinja2Templates:
    """The pages' Jinja environment: translations, and the product's name, logo and contact."""
    templates = Jinja2Templates(directory=str(templates_dir()))
    preload(config.languages.enabled)
    install_i18n(templates.env)
    brand = config.branding
    templates.env.globals.update(
        prefix=config.prefix, issuer=config.totp.issuer, digits=config.totp.digits,
        product_name=brand.product_name or config.totp.issuer, logo=brand.logo,
        brand_css=brand_css, support=config.support_contact,
        support_href=support_link(config.support_contact))
    return templates
