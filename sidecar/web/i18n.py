"""Languages: the message catalogues, the choice of language per request, gettext helpers.

The source language is English: every user-facing string is written in English in the code
and the templates, and marked for translation. German, French, Spanish and Japanese
catalogues live in ``sidecar/locale/<lang>/LC_MESSAGES/messages.po`` and are compiled in
memory when first used (no ``.mo`` files, no compile step: a fresh clone works as it is).

How to mark strings
-------------------

In a module (a page handler, a notice)::

    from sidecar.web.i18n import gettext as _, lazy_gettext as _l, ngettext

    TITLES = {"reset": _l("Your two-factor authentication was reset")}  # module level: lazy

    async def page(request):
        title = _("Choose a new device")                       # at request time
        text = _("Sent to %(address)s.", address=email)         # named placeholders only
        left = ngettext("%(num)s device", "%(num)s devices", n)  # num is filled in with n

Inside a request the language is the one chosen from ``Accept-Language`` (the
``LanguageMiddleware`` around the pages sets it for the whole request, exception handlers
included). Outside a request (a notice sent later, the CLI) choose it explicitly::

    with use_language("de"):
        subject = _("Two-factor authentication is enabled.")
    # or: translator("de").gettext("...")

A lazy string (``_l``) is translated each time it is turned into text (``str()``, Jinja's
``{{ }}``), so module-level constants follow the language of the request that shows them.

In a template (the shared Jinja environment of ``sidecar.web.pages.Pages`` has everything
installed; for another environment call ``install(env)``)::

    <h1>{{ _("Your devices") }}</h1>
    {% trans %}Each code works once.{% endtrans %}
    {% trans account=visit.account %}Codes for <strong>{{ account }}</strong>{% endtrans %}
    {% trans count=n %}{{ count }} device{% pluralize %}{{ count }} devices{% endtrans %}
    <html lang="{{ current_language() }}">

Placeholders are always ``%(name)s`` (never positional ``%s``); a literal percent sign is
``%%`` in ``_()``/``ngettext`` strings that have variables (``{% trans %}`` escapes it itself).

Updating the catalogues (the test ``tests/unit/test_i18n.py`` fails until this is done)::

    pybabel extract -F babel.cfg -k _l -k lazy_gettext -k lazy_ngettext:1,2 \\
        --add-comments=Translators: --no-location --sort-output --project=totp-sidecar \\
        -o sidecar/locale/messages.pot .
    pybabel update -i sidecar/locale/messages.pot -d sidecar/locale -N -w 100
    # translate every new or changed entry (and remove its "fuzzy" flag), then run the tests
"""

from __future__ import annotations

import contextlib
import functools
import gettext as _gettext
import io
import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from sidecar.config import LANGUAGES, SOURCE_LANGUAGE

LOCALE_DIR = Path(__file__).parents[1] / "locale"
DOMAIN = "messages"
#: ``pybabel extract`` arguments besides ``-F babel.cfg -o FILE DIR`` (kept in one place: the
#: freshness test runs exactly these).
EXTRACT_OPTIONS: tuple[str, ...] = ("-k", "_l", "-k", "lazy_gettext", "-k", "lazy_ngettext:1,2",
                                    "--add-comments=Translators:", "--no-location",
                                    "--sort-output", "--project=totp-sidecar")

_current: ContextVar[str] = ContextVar("totp_sidecar_language", default=SOURCE_LANGUAGE)
_MAX_HEADER = 1024  # characters of Accept-Language looked at
_MAX_RANGES = 32
_RANGE = re.compile(r"^(\*|[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*)$")
_QVALUE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")


# -- choosing the language ------------------------------------------------------------------
def parse_accept_language(header: str) -> list[tuple[str, float]]:
    """The language ranges of an ``Accept-Language`` header, best first (q=0 left out).

    Lower-case ranges; entries of equal quality keep the order they were sent in; malformed
    entries are skipped, never an error.
    """
    ranges: list[tuple[str, float]] = []
    for item in header[:_MAX_HEADER].split(",")[:_MAX_RANGES]:
        tag, _, params = item.strip().partition(";")
        tag = tag.strip().lower()
        if not _RANGE.match(tag):
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                quality = float(value) if _QVALUE.match(value) else -1.0
        if quality > 0:
            ranges.append((tag, quality))
    ranges.sort(key=lambda pair: -pair[1])  # stable: equal q keep the sender's order
    return ranges


def negotiate(header: str | None, enabled: tuple[str, ...] = LANGUAGES,
              default: str = SOURCE_LANGUAGE) -> str:
    """The enabled language that best fits ``Accept-Language``, else ``default``.

    ``de-CH`` matches ``de`` (RFC 4647 lookup: the range is shortened until it matches);
    ``*`` stands for the default. ``default`` should be one of ``enabled``.
    """
    wanted = set(enabled)
    for tag, _ in parse_accept_language(header or ""):
        if tag == "*":
            return default
        parts = tag.split("-")
        while parts:
            candidate = "-".join(parts)
            if candidate in wanted:
                return candidate
            parts.pop()
    return default


# -- catalogues -----------------------------------------------------------------------------
def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translation(language: str) -> _gettext.NullTranslations:
    """The compiled catalogue of ``language`` (English and unknown languages: the source text).

    The ``.po`` file is compiled in memory once per process; untranslated and fuzzy entries
    fall back to English.
    """
    if language == SOURCE_LANGUAGE or language not in LANGUAGES:
        return _gettext.NullTranslations()
    with catalogue_path(language).open("rb") as file:
        catalog = read_po(file, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return _gettext.GNUTranslations(buffer)


def preload(languages: tuple[str, ...] = LANGUAGES) -> None:
    """Compile the catalogues now, so a broken one stops the start rather than a page."""
    for language in languages:
        translation(language)


# -- the language of this request -----------------------------------------------------------
def current_language() -> str:
    return _current.get()


@contextlib.contextmanager
def use_language(language: str) -> Iterator[str]:
    """Translate into ``language`` inside the ``with`` block (a notice, a CLI message)."""
    token = _current.set(language if language in LANGUAGES else SOURCE_LANGUAGE)
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def gettext(message: str, **variables: Any) -> str:
    """``message`` in the current language; ``%(name)s`` placeholders filled from ``variables``."""
    text = translation(_current.get()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    """The singular or plural form for ``n`` in the current language; ``%(num)s`` is ``n``."""
    variables.setdefault("num", n)
    return translation(_current.get()).ngettext(singular, plural, n) % variables


def pgettext(context: str, message: str, **variables: Any) -> str:
    """Like ``gettext``, for a message whose meaning depends on ``context`` (msgctxt)."""
    text = translation(_current.get()).pgettext(context, message)
    return text % variables if variables else text


_ = gettext


class LazyString:
    """A message translated each time it becomes text (for module-level constants)."""

    __slots__ = ("_func", "_args", "_variables")

    def __init__(self, func: Callable[..., str], *args: Any, **variables: Any) -> None:
        self._func = func
        self._args = args
        self._variables = variables

    def __str__(self) -> str:
        return self._func(*self._args, **self._variables)

    def __repr__(self) -> str:
        return f"<LazyString {self._args[0]!r}>"

    def __len__(self) -> int:
        return len(str(self))

    def __eq__(self, other: object) -> bool:
        return str(self) == (str(other) if isinstance(other, LazyString | str) else other)

    def __hash__(self) -> int:
        return hash(self._args)

    def __add__(self, other: str) -> str:
        return str(self) + other

    def __radd__(self, other: str) -> str:
        return other + str(self)

    def __mod__(self, other: Any) -> str:
        text: str = str(self) % other
        return text


def lazy_gettext(message: str, **variables: Any) -> LazyString:
    return LazyString(gettext, message, **variables)


def lazy_ngettext(singular: str, plural: str, n: int, **variables: Any) -> LazyString:
    return LazyString(ngettext, singular, plural, n, **variables)


_l = lazy_gettext


class Translator:
    """gettext/ngettext bound to one language, whatever the current request's language."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else SOURCE_LANGUAGE

    def gettext(self, message: str, **variables: Any) -> str:
        with use_language(self.language):
            return gettext(message, **variables)

    def ngettext(self, singular: str, plural: str, n: int, **variables: Any) -> str:
        with use_language(self.language):
            return ngettext(singular, plural, n, **variables)


def translator(language: str) -> Translator:
    return Translator(language)


# -- Jinja and ASGI -------------------------------------------------------------------------
def install(env: Any) -> None:
    """Give a Jinja environment ``_``, ``gettext``, ``ngettext``, ``{% trans %}`` and
    ``current_language()``, all following the current request's language."""
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True  # babel.cfg extracts with trimmed = true too
    env.install_gettext_callables(
        lambda message: translation(_current.get()).gettext(message),
        lambda singular, plural, n: translation(_current.get()).ngettext(singular, plural, n),
        newstyle=True,
        pgettext=lambda context, message: translation(_current.get()).pgettext(context, message),
    )
    env.globals["current_language"] = current_language


Scope = dict[str, Any]


class LanguageMiddleware:
    """Plain ASGI middleware: the request's language, from ``Accept-Language``, for its whole
    handling (pages, templates, exception handlers)."""

    def __init__(self, app: Any, enabled: tuple[str, ...] = LANGUAGES,
                 default: str = SOURCE_LANGUAGE) -> None:
        self.app = app
        self.enabled = enabled
        self.default = default

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"]
                       if k == b"accept-language"), "")
        token = _current.set(negotiate(header, self.enabled, self.default))
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
