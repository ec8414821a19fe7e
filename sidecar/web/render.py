"""What the pages show: the templates (with the branding and languages installed), what a page
request is (``Visit``), and the words for times and lockouts."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from sidecar.branding import support_link
from sidecar.config import Config
from sidecar.core.request import Reading
from sidecar.decision import Verdict
from sidecar.primary import Identity, Resolved
from sidecar.web.i18n import gettext, ngettext, preload
from sidecar.web.i18n import install as install_i18n


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
    def expect(self) -> int:
        """The 2FA state a change made from this page must still find in storage: 0 (2FA off)
        for a session that has not passed, else the generation its pass was checked against.
        A write guarded by it fails when 2FA was turned on (or reset) since this page read it."""
        if self.verdict is None or not self.verdict.enrolled or not self.verdict.verified:
            return 0
        return self.verdict.generation

    @property
    def account(self) -> str:
        """The name shown in the authenticator app: e-mail when known, else the user id."""
        if self.identity is None:
            return ""
        return self.identity.email or self.identity.user


#: The notices of the settings page that follow new recovery codes ("Complete").
CODES_NOTICES = ("enabled", "codes")


def slug(text: str) -> str:
    """``My App`` -> ``my-app``: a file name part without spaces."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "totp"


def when(timestamp: int | None) -> str:
    """A moment as plain text in UTC (a downloaded file, a log): ``2026-12-02 10:25 UTC``."""
    if not timestamp:
        return ""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def local_time(timestamp: int | None) -> Markup:
    """A moment on a page: ``<time datetime>`` that the page script shows in the reader's
    language and time zone; without the script, the UTC text of ``when``."""
    if not timestamp:
        return Markup("")
    at = moment(timestamp)
    return Markup('<time datetime="%s" class="local-time">%s</time>') % (at["iso"], when(timestamp))


def lockout_message(locked_until: float, now: float) -> Markup:
    """"Too many attempts. Try again in 14 minutes, … You can try again after <time>": the
    time left in words and the moment it ends, in the reader's time zone (see ``moment``)."""
    at = moment(locked_until)
    after = Markup(gettext('You can try again after <time datetime="%(iso)s" class="local-time">'
                           '%(text)s</time>.')) % {"iso": at["iso"], "text": at["text"]}
    return escape(lockout_words(locked_until, now)) + Markup(" ") + after


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
