"""The pages in the browser's language, and branded, through the real ASGI apps."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import Browser, Env, FakeClock, make_config, sqlite_path, start_env

pytestmark = pytest.mark.anyio

GERMAN = {"accept-language": "de-CH,de;q=0.9,en;q=0.8"}


async def enrolled(env: Env) -> tuple[Browser, str, list[str]]:
    """Alice with 2FA on, signed in again (so the challenge is asked)."""
    browser = env.browser()
    await browser.login("alice")
    secret, codes = await browser.enroll()
    await browser.logout()
    await browser.login("alice")
    return browser, secret, codes


async def test_english_without_accept_language(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    page = await browser.get("/_2fa/enroll")
    assert '<html lang="en">' in page.text
    assert "<h1>Set up two-factor authentication</h1>" in page.text


async def test_german_challenge_page(env: Env) -> None:
    browser, _, _ = await enrolled(env)
    page = await browser.get("/_2fa/challenge?rd=/", **GERMAN)
    assert page.status_code == 200
    assert '<html lang="de">' in page.text
    assert "<h1>Zwei-Faktor-Authentifizierung</h1>" in page.text
    assert '<label for="code">Authentifizierungscode</label>' in page.text
    assert ">Bestätigen</button>" in page.text
    assert "Wiederherstellungscode verwenden" in page.text
    assert "<summary>Probleme?</summary>" in page.text  # the help, translated
    assert "Switch to recovery code" not in page.text and "Verify" not in page.text
    recovery = await browser.get("/_2fa/challenge?rd=/&method=recovery", **GERMAN)
    assert '<label for="code">Wiederherstellungscode</label>' in recovery.text


async def test_german_error_and_lockout(env: Env) -> None:
    browser, secret, _ = await enrolled(env)
    csrf, _ = await browser.form_token("/_2fa/challenge?rd=/")
    wrong = await browser.post("/_2fa/challenge", {"csrf": csrf, "code": "000000", "rd": "/"},
                               **GERMAN)
    assert wrong.status_code == 400
    assert ('<p class="error" id="code-error" role="alert"><strong>Fehler:</strong> Dieser Code '
            "ist ungültig.") in wrong.text
    assert 'aria-describedby="code-error"' in wrong.text
    assert '<details class="help" open>' in wrong.text  # the troubleshooting opens on an error
    for _ in range(4):
        await browser.post("/_2fa/challenge", {"csrf": csrf, "code": "000000", "rd": "/"})
    env.clock.advance(60 * 5 + 1)
    locked = await browser.get("/_2fa/challenge?rd=/", **GERMAN)
    assert "Zu viele Versuche. Versuchen Sie es in 10 Minuten erneut" in locked.text
    assert 'ab <time datetime="2027-01-15T08:15:00Z" class="local-time">08:15 UTC</time>' in locked.text
    english = await browser.get("/_2fa/challenge?rd=/")
    assert "Too many attempts. Try again in 10 minutes, or ask" in english.text
    assert 'after <time datetime="2027-01-15T08:15:00Z"' in english.text
    assert "<strong>Error:</strong> Too many attempts." in english.text
    env.clock.advance(60 * 9 + 30)
    last = await browser.get("/_2fa/challenge?rd=/")
    assert "Try again in 1 minute," in last.text  # singular, rounded up


async def test_german_enroll_page_and_recovery_codes(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    page = await browser.get("/_2fa/enroll", **GERMAN)
    assert '<html lang="de">' in page.text
    assert "<h1>Zwei-Faktor-Authentifizierung einrichten</h1>" in page.text
    assert "Scannen Sie diesen QR-Code. Die App zeigt einen 6-stelligen Code an." in page.text
    assert "<title>QR-Code für Ihre Authenticator-App</title>" in page.text  # the SVG's title
    assert 'data-copied="Kopiert"' in page.text and ">Schlüssel kopieren</button>" in page.text
    assert 'autocomplete="one-time-code"' in page.text and 'inputmode="numeric"' in page.text
    secret = re.search(r'id="secret-key">([A-Z2-7 ]+)<', page.text).group(1)  # type: ignore[union-attr]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    import pyotp
    code = pyotp.TOTP(secret.replace(" ", "")).at(int(env.clock()))
    done = await browser.post("/_2fa/enroll", {"csrf": csrf, "code": code[:3] + " " + code[3:]},
                              **GERMAN)
    assert done.status_code == 303
    done = await browser.get(done.headers["location"], **GERMAN)
    assert done.status_code == 200
    assert "<h1>Speichern Sie Ihre Wiederherstellungscodes</h1>" in done.text
    download = unquote(re.search(r'href="data:text/plain;charset=utf-8,([^"]+)"',  # type: ignore[union-attr]
                                 done.text).group(1))
    assert download.startswith("Wiederherstellungscodes für Test App\nKonto: alice@example.com\n"
                               "Erstellt: 2027-01-15 08:00 UTC\n")
    assert len(re.findall(r"(?m)^[a-z2-9]{5}-[a-z2-9]{5}$", download)) == 20


async def test_german_settings_page(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    off = await browser.get("/_2fa/settings", **GERMAN)
    assert '<span class="badge">Aus</span>' in off.text
    assert ">Zwei-Faktor-Authentifizierung aktivieren</a>" in off.text
    await browser.enroll()
    on = await browser.get("/_2fa/settings?notice=enabled&saved=1", **GERMAN)
    assert '<p class="notice" role="status">Die Zwei-Faktor-Authentifizierung ist aktiviert.</p>' \
        in on.text
    assert "Noch 20 von 20 Wiederherstellungscodes übrig." in on.text
    assert ">Zwei-Faktor-Authentifizierung deaktivieren</button>" in on.text
    assert "Zwei-Faktor-Einstellungen" in on.text and "Zurück zu Test App" in on.text


async def test_quality_values_and_other_languages(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    japanese = await browser.get("/_2fa/settings", **{"accept-language": "fr;q=0.5, ja;q=0.8"})
    assert '<html lang="ja">' in japanese.text and "2段階認証を有効にする" in japanese.text
    french = await browser.get("/_2fa/settings", **{"accept-language": "fr-CA"})
    assert "Activer l’authentification à deux facteurs" in french.text
    spanish = await browser.get("/_2fa/settings", **{"accept-language": "es-419, en;q=0.1"})
    assert "Activar la autenticación en dos pasos" in spanish.text
    other = await browser.get("/_2fa/settings", **{"accept-language": "it, pt;q=0.5"})
    assert '<html lang="en">' in other.text


async def test_message_pages_are_translated(env: Env) -> None:
    anonymous = env.browser()
    page = await anonymous.get("/_2fa/settings", **{"accept-language": "fr"})
    assert page.status_code == 401 and "<h1>Connectez-vous d’abord</h1>" in page.text
    browser = env.browser()
    await browser.login("alice")
    expired = await browser.post("/_2fa/disable", {"csrf": "x", "code": "1"},
                                 **{"accept-language": "es"})
    assert expired.status_code == 403 and "Este formulario ha caducado" in expired.text
    Path(sqlite_path(env.config)).unlink()
    down = await browser.get("/_2fa/settings", **GERMAN)
    assert down.status_code == 503
    assert "Die Zwei-Faktor-Authentifizierung ist nicht verfügbar" in down.text
    assert "Es wurde nichts geändert." in down.text and '<html lang="de">' in down.text


async def test_enabled_languages_and_default_from_config(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, languages={"enabled": ["en", "fr"], "default": "fr"})
    async for env in start_env(config, clock):
        browser = env.browser()
        await browser.login("alice")
        page = await browser.get("/_2fa/settings", **{"accept-language": "de-CH, de;q=0.9"})
        assert '<html lang="fr">' in page.text  # German is not enabled: the default
        page = await browser.get("/_2fa/settings", **GERMAN)  # … which also accepts English
        assert '<html lang="en">' in page.text
        page = await browser.get("/_2fa/settings", **{"accept-language": "en-GB"})
        assert '<html lang="en">' in page.text


async def test_branding(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, branding={
        "product_name": "Acme Cloud", "logo_url": "https://cdn.example.com/logo.png",
        "accent_color": "#0b5cad", "support_contact": "it-help@example.com"})
    async for env in start_env(config, clock):
        browser = env.browser()
        await browser.login("alice")
        page = await browser.get("/_2fa/enroll")
        assert "<title>Set up two-factor authentication · Acme Cloud</title>" in page.text
        assert '<img class="logo" src="https://cdn.example.com/logo.png" alt="">Acme Cloud' \
            in page.text
        assert '<link rel="stylesheet" href="/_2fa/static/brand.css">' in page.text
        assert ('<a href="mailto:it-help@example.com">it-help@example.com</a>') in page.text
        assert "Back to Acme Cloud" in page.text
        assert "Keep only one Test App entry" in page.text  # the app shows the issuer
        csp = page.headers["content-security-policy"]
        assert "img-src 'self' data: https://cdn.example.com;" in csp
        assert "style=" not in page.text and "<style" not in page.text
        css = await browser.get("/_2fa/static/brand.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert "--accent: #0b5cad; --accent-text: #ffffff;" in css.text
        style = await browser.get("/_2fa/static/style.css")  # the static files still served
        assert style.status_code == 200 and "--accent:" in style.text


async def test_logo_file_and_the_older_support_contact(tmp_path: Path, clock: FakeClock) -> None:
    svg = tmp_path / "logo.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')
    config = make_config(tmp_path, branding={"logo_file": str(svg)},
                         support_contact="Call the IT desk on 1234")
    async for env in start_env(config, clock):
        browser = env.browser()
        await browser.login("alice")
        page = await browser.get("/_2fa/enroll")
        assert '<img class="logo" src="data:image/svg+xml;base64,' in page.text
        assert "img-src 'self' data:;" in page.headers["content-security-policy"]
        assert '<dd class="contact">Contact: Call the IT desk on 1234</dd>' in page.text
        assert "brand.css" not in page.text
