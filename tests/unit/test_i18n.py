"""Languages: the choice from Accept-Language, the helpers, and the catalogues themselves.

The catalogue tests fail when a string was added or changed without re-extracting the .pot,
when a language misses a translation (or still has it "fuzzy"), and when a translation lost
or invented a placeholder or an HTML tag. sidecar/web/i18n.py says how to update them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jinja2
import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.config import LANGUAGES
from sidecar.web import i18n
from sidecar.web.i18n import (
    EXTRACT_OPTIONS,
    LOCALE_DIR,
    LanguageMiddleware,
    gettext,
    lazy_gettext,
    negotiate,
    ngettext,
    parse_accept_language,
    translator,
    use_language,
)

ROOT = Path(__file__).resolve().parents[2]
POT = LOCALE_DIR / "messages.pot"
TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdif]")
TAG = re.compile(r"</?[a-z][a-z0-9]*\b[^>]*>")


# -- negotiation ----------------------------------------------------------------------------
@pytest.mark.parametrize(("header", "expected"), [
    ("de", "de"),
    ("de-CH", "de"),
    ("de-ch,de;q=0.9,en;q=0.8", "de"),
    ("fr-CA;q=0.8, ja;q=0.9", "ja"),  # q-values, not order
    ("es-419", "es"),
    ("ja-JP", "ja"),
    ("en-US,en;q=0.9", "en"),
    ("it, pt;q=0.9, de;q=0.1", "de"),  # unknown languages are skipped
    ("it, pt", "en"),  # nothing fits: the default
    ("*", "en"),
    ("de;q=0, fr", "fr"),  # q=0 means "not this one"
    ("DE-at", "de"),  # case-insensitive
    ("", "en"),
    ("de;q=2, fr;q=0.5", "fr"),  # an invalid q-value drops its entry
    ("de;q=abc, es", "es"),
    (";;;,,,", "en"),
    ("fr ; q = 0.5 , es ; q=0.4", "fr"),
    ("x" * 5000, "en"),
])
def test_negotiate(header: str, expected: str) -> None:
    assert negotiate(header) == expected


def test_equal_quality_keeps_the_senders_order() -> None:
    assert negotiate("fr, de") == "fr"
    assert negotiate("de, fr") == "de"
    assert [tag for tag, _ in parse_accept_language("es;q=0.5, fr, de;q=0.5")] == ["fr", "es", "de"]


def test_negotiation_is_restricted_to_enabled_languages_with_their_default() -> None:
    assert negotiate("de-CH, ja;q=0.5", enabled=("en", "fr", "ja"), default="fr") == "ja"
    assert negotiate("de", enabled=("en", "fr"), default="fr") == "fr"
    assert negotiate(None, enabled=("en", "fr"), default="fr") == "fr"
    assert negotiate("*", enabled=("es", "fr"), default="es") == "es"


@settings(max_examples=300, deadline=None)
@given(st.text() | st.lists(st.sampled_from(["de", "de-CH", "*", "q=", ";", ",", "=", "0.5", " ",
                                              "ja", "\x00", "é"])).map("".join))
def test_negotiate_never_fails_on_any_header(header: str) -> None:
    assert negotiate(header, ("en", "de", "ja"), "en") in ("en", "de", "ja")


def test_a_huge_header_is_cut_not_slow() -> None:
    header = ",".join(["xx"] * 100_000) + ",de"
    assert negotiate(header) == "en"  # only the first entries are looked at


# -- helpers --------------------------------------------------------------------------------
def test_gettext_follows_the_current_language() -> None:
    assert gettext("Verify") == "Verify"
    with use_language("de"):
        assert gettext("Verify") == "Bestätigen"
        with use_language("ja"):
            assert gettext("Verify") == "確認"
        assert gettext("Verify") == "Bestätigen"
    with use_language("klingon"):  # unknown: English
        assert gettext("Verify") == "Verify"
    assert gettext("Verify") == "Verify"


def test_placeholders_and_plurals() -> None:
    assert gettext("Back to %(name)s", name="Acme") == "Back to Acme"
    with use_language("fr"):
        assert gettext("Back to %(name)s", name="Acme") == "Retour à Acme"
        one = ngettext("You have %(count)s recovery code left.",
                       "You have %(count)s recovery codes left.", 1, count=1)
        two = ngettext("You have %(count)s recovery code left.",
                       "You have %(count)s recovery codes left.", 2, count=2)
    assert one == "Il vous reste 1 code de récupération."
    assert two == "Il vous reste 2 codes de récupération."
    assert ngettext("%(num)s device", "%(num)s devices", 3) == "3 devices"  # num is n
    assert gettext("An untranslated message") == "An untranslated message"


def test_lazy_strings_are_translated_when_shown() -> None:
    notice = lazy_gettext("Two-factor authentication is enabled.")
    assert str(notice) == "Two-factor authentication is enabled."
    with use_language("es"):
        assert str(notice) == "La autenticación en dos pasos está activada."
        assert notice == "La autenticación en dos pasos está activada."
        assert "» " + notice == "» La autenticación en dos pasos está activada."
    env = jinja2.Environment(autoescape=True)
    with use_language("de"):
        assert env.from_string("<p>{{ n }}</p>").render(n=notice) == \
            "<p>Die Zwei-Faktor-Authentifizierung ist aktiviert.</p>"


def test_translator_is_bound_to_one_language() -> None:
    german = translator("de")
    with use_language("fr"):
        assert german.gettext("Verify") == "Bestätigen"
        assert gettext("Verify") == "Valider"
    assert german.ngettext("You have %(count)s recovery code left.",
                           "You have %(count)s recovery codes left.", 2, count=2) == \
        "Sie haben noch 2 Wiederherstellungscodes."


def test_jinja_environment_gets_trans_and_the_language() -> None:
    env = jinja2.Environment(autoescape=True)
    i18n.install(env)
    template = env.from_string(
        '<html lang="{{ current_language() }}">{{ _("Verify") }} '
        "{% trans name=who %}Back to {{ name }}{% endtrans %} "
        "{% trans count=n %}You have {{ count }} recovery code left.{% pluralize %}"
        "You have {{ count }} recovery codes left.{% endtrans %}")
    with use_language("de"):
        out = template.render(who="<Acme>", n=2)
    assert out == ('<html lang="de">Bestätigen Zurück zu &lt;Acme&gt; '
                   "Sie haben noch 2 Wiederherstellungscodes.")


@pytest.mark.anyio
async def test_middleware_sets_the_language_for_the_request_only() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(i18n.current_language())

    middleware = LanguageMiddleware(app, enabled=("en", "de", "ja"), default="en")
    for header, expected in ((b"de-CH,de;q=0.9", "de"), (b"fr", "en"), (b"ja", "ja")):
        await middleware({"type": "http", "headers": [(b"accept-language", header)]}, None, None)
        assert seen[-1] == expected
    await middleware({"type": "http", "headers": []}, None, None)
    assert seen[-1] == "en"
    assert i18n.current_language() == "en"  # nothing leaks out of a request


# -- the catalogues -------------------------------------------------------------------------
def load(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as file:
        return read_po(file, locale=locale)


def key(message: Message) -> tuple[str | None, object]:
    return (message.context, message.id)


def messages(catalog: Catalog) -> dict[tuple[str | None, object], Message]:
    return {key(m): m for m in catalog if m.id}


def test_the_pot_is_up_to_date_with_the_code_and_templates(tmp_path: Path) -> None:
    """Re-extract exactly as documented; the committed .pot must have the same messages."""
    fresh = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "-q", "extract",
                    "-F", str(ROOT / "babel.cfg"), *EXTRACT_OPTIONS, "-o", str(fresh), str(ROOT)],
                   check=True, capture_output=True, cwd=ROOT)
    extracted = set(messages(load(fresh)))
    committed = set(messages(load(POT)))
    missing = sorted(map(str, extracted - committed))
    stale = sorted(map(str, committed - extracted))
    assert not missing and not stale, (
        "sidecar/locale/messages.pot is stale; re-extract (see sidecar/web/i18n.py).\n"
        f"new in the code: {missing}\nno longer in the code: {stale}")


def test_the_readme_documents_the_same_extraction_command() -> None:
    readme = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    flattened = re.sub(r"\s*\\\n\s*", " ", readme)
    assert "pybabel extract -F babel.cfg " + " ".join(EXTRACT_OPTIONS) in flattened


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated(language: str) -> None:
    template = messages(load(POT))
    catalog = load(i18n.catalogue_path(language), language)
    translated = messages(catalog)
    problems = []
    for ident in template:
        message = translated.get(ident)
        if message is None:
            problems.append(f"missing: {ident}")
            continue
        forms = message.string if isinstance(message.string, tuple | list) else (message.string,)
        if message.fuzzy:
            problems.append(f"fuzzy: {ident}")
        if not all(forms):
            problems.append(f"empty: {ident}")
        if message.pluralizable and len(forms) != catalog.num_plurals:
            problems.append(f"{len(forms)} plural forms, {language} has {catalog.num_plurals}: "
                            f"{ident}")
    for ident in set(translated) - set(template):
        problems.append(f"not in messages.pot (run pybabel update): {ident}")
    assert not problems, f"{language}: " + "\n".join(problems)


@pytest.mark.parametrize("language", TRANSLATED)
def test_placeholders_and_tags_survive_translation(language: str) -> None:
    problems = []
    for message in load(i18n.catalogue_path(language), language):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        forms = message.string if isinstance(message.string, tuple | list) else (message.string,)
        wanted = set().union(*(PLACEHOLDER.findall(str(i)) for i in ids))
        tags = Counter(TAG.findall(str(ids[0])))
        for form in map(str, filter(None, forms)):
            if set(PLACEHOLDER.findall(form)) != wanted:
                problems.append(f"placeholders {sorted(PLACEHOLDER.findall(form))} != "
                                f"{sorted(wanted)}: {form!r}")
            if Counter(TAG.findall(form)) != tags:
                problems.append(f"HTML tags differ: {form!r}")
            try:
                form % {name: "x" for name in wanted}
            except (ValueError, TypeError, KeyError) as exc:
                problems.append(f"does not format ({exc}): {form!r}")
    assert not problems, f"{language}: " + "\n".join(problems)


def test_every_language_loads_and_translates_the_page_title() -> None:
    expected = {"en": "Two-factor authentication", "de": "Zwei-Faktor-Authentifizierung",
                "fr": "Authentification à deux facteurs", "es": "Autenticación en dos pasos",
                "ja": "2段階認証"}
    for language in LANGUAGES:
        assert translator(language).gettext("Two-factor authentication") == expected[language]
