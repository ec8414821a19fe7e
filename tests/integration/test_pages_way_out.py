"""Issue 12, pages: the way out of the code prompt and of required set-up ("Not you? Sign
out"), the app's login and logout paths reachable without a code, and what the prompts say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar.core.policy import Level, Rule, Subject, Target
from sidecar.wiring import make_policy
from tests.conftest import Env, FakeClock, config_dict, make_config, running_env

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def primary(**more: object) -> dict[str, object]:
    return {"resolver": "introspect", "session_cookies": ["demo_session"],
            "introspect": {"url": "http://app.test/api/me"}, **more}


async def test_sign_out_from_the_code_prompt_ends_both_sessions(tmp_path: Path,
                                                                 clock: FakeClock) -> None:
    config = make_config(tmp_path, primary=primary(logout_url="/logout"))
    async with running_env(config, clock) as env:
        browser = env.browser()
        await browser.login("alice")
        await browser.enroll()
        browser.cookies.pop("totp_sidecar", None)  # a new app session: the prompt
        csrf, page = await browser.form_token("/_2fa/challenge?rd=/reports")
        assert 'action="/_2fa/signout"' in page and "Not you?" in page
        response = await browser.post("/_2fa/signout", {"csrf": csrf})
        assert response.status_code == 303
        assert response.headers["location"] == "/logout"
        lines = response.headers.get_list("set-cookie")
        expired = {line.split("=", 1)[0] for line in lines if "Max-Age=0" in line}
        assert {"demo_session", "totp_sidecar", "totp_sidecar_device"} <= expired
        assert any(line.startswith("demo_session=;") and "Path=/" in line for line in lines)
        assert "demo_session" not in browser.cookies
        assert (await browser.auth("/logout")).status_code == 200  # the app's logout: no code


async def test_sign_out_goes_to_the_login_page_without_a_logout_url(tmp_path: Path,
                                                                     clock: FakeClock) -> None:
    config = make_config(tmp_path, primary=primary(login_url="/login"))
    async with running_env(config, clock) as env:
        browser = env.browser()
        await browser.login("alice")
        await browser.enroll()
        browser.cookies.pop("totp_sidecar", None)
        csrf, _ = await browser.form_token("/_2fa/challenge?rd=/")
        response = await browser.post("/_2fa/signout", {"csrf": csrf})
        assert response.headers["location"] == "/login"


async def test_sign_out_needs_the_csrf_token(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    response = await browser.post("/_2fa/signout", {"csrf": "forged"})
    assert response.status_code == 403
    assert "demo_session" in browser.cookies
    cross = await browser.post("/_2fa/signout", {}, **{"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403


async def test_required_enrollment_offers_the_way_out(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, default_level="required")
    async with running_env(config, clock) as env:
        browser = env.browser()
        await browser.login("alice")
        _, required = await browser.form_token("/_2fa/enroll?rd=/reports")
        assert 'action="/_2fa/signout"' in required
        _, chosen = await browser.form_token("/_2fa/enroll")  # from settings: the user's choice
        assert 'action="/_2fa/signout"' not in chosen


def test_login_and_logout_paths_are_implicit_bypass_rules_a_deny_still_wins(
        tmp_path: Path) -> None:
    config = make_config(tmp_path, default_level="required",
                         primary=primary(login_url="/login", logout_url="https://app.test/logout"),
                         rules=[{"path": "/logout", "level": "deny", "users": ["mallory"]}])
    policy = make_policy(config)
    alice, mallory = Subject("alice"), Subject("mallory")
    assert policy.level_for(Target("app.test", "/login", "POST"), alice) is Level.BYPASS
    assert policy.level_for(Target("app.test", "/login/"), alice) is Level.BYPASS
    assert policy.level_for(Target("app.test", "/login/admin"), alice) is Level.REQUIRED
    assert policy.level_for(Target("app.test", "/logout"), alice) is Level.BYPASS
    assert policy.level_for(Target("other.test", "/logout"), alice) is Level.REQUIRED
    assert policy.level_for(Target("app.test", "/logout"), mallory) is Level.DENY
    assert policy.level_for(Target("app.test", "/"), alice) is Level.REQUIRED
    assert all(isinstance(rule, Rule) for rule in policy.implicit)


def test_default_login_page_adds_no_rule(tmp_path: Path) -> None:
    assert make_policy(make_config(tmp_path)).implicit == ()


def test_check_config_prints_the_implicit_rules(tmp_path: Path) -> None:
    data = config_dict(tmp_path, primary=primary(login_url="/login", logout_url="/logout"))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "sidecar", "check-config", str(path)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert re.search(r"implicit rule: bypass /login .*primary\.login_url", done.stdout)
    assert re.search(r"implicit rule: bypass /logout .*primary\.logout_url", done.stdout)


async def test_one_remember_checkbox_worded_once(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, remember_device={"enabled": True, "max_days": 30})
    async with running_env(config, clock) as env:
        browser = env.browser()
        await browser.login("alice")
        await browser.enroll()
        browser.cookies.pop("totp_sidecar", None)
        _, page = await browser.form_token("/_2fa/challenge?rd=/")
        assert page.count('name="remember"') == 1
        assert "Don't ask for a code on this browser for 30 days" in page.replace("&#39;", "'")
        assert "Remember this device" not in page


async def test_step_up_page_says_confirm_access_and_why(tmp_path: Path, clock: FakeClock) -> None:
    rules = [{"path": "/account/password", "level": "optional", "step_up": "5m"}]
    config = make_config(tmp_path, rules=rules, remember_device={"enabled": True, "max_days": 30})
    async with running_env(config, clock) as env:
        browser = env.browser()
        await browser.login("alice")
        secret, _ = await browser.enroll()
        await browser.sign_in_and_remember("alice", secret)
        await browser.logout()
        await browser.login("alice")  # in through the remembered device: no code typed
        browser.keep(await browser.auth("/reports"))
        page = await browser.get("/_2fa/challenge?rd=/account/password&why=step_up")
        assert page.status_code == 200
        text = page.text
        assert "<title>Confirm access" in text and "<h1>Confirm access</h1>" in text
        assert "a code entered in the last 5 minutes" in text and "for 5 minutes" in text
        assert "earlier in this session" not in text and "signed in with two-factor" not in text
        assert 'name="remember"' not in text
        assert 'action="/_2fa/signout"' in text


async def test_required_enrollment_explains_itself(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, default_level="required",
                         branding={"support_contact": "help@example.com"})
    async with running_env(config, clock) as env:
        browser = env.browser()
        await browser.login("alice")
        _, page = await browser.form_token("/_2fa/enroll?rd=/reports")
        assert "Your administrator requires two-factor authentication for this account." in page
        assert 'href="mailto:help@example.com"' in page
        assert "recovery codes?" not in page  # none yet: set-up help does not mention them
        _, chosen = await browser.form_token("/_2fa/enroll")
        assert "Your administrator requires" not in chosen


async def test_recovery_mode_shows_recovery_help_only(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    await browser.enroll()
    browser.cookies.pop("totp_sidecar", None)
    _, recovery = await browser.form_token("/_2fa/challenge?rd=/&method=recovery")
    assert "Each recovery code works once" in recovery
    assert "Codes depend on the time" not in recovery and "QR code" not in recovery
    _, totp = await browser.form_token("/_2fa/challenge?rd=/")
    assert "Codes depend on the time" in totp


async def test_errors_say_what_happened(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, _ = await browser.enroll()  # the current code is now used
    browser.cookies.pop("totp_sidecar", None)
    replayed = await browser.challenge(env.code(secret), rd="/")
    assert replayed.status_code == 400
    assert "This code was just used. Wait for the next one in your app." in replayed.text
    assert "attempt" not in replayed.text  # the 1st failure: no count yet
    second = await browser.challenge("000000", rd="/")
    assert "That code is not valid" in second.text and "attempts left" not in second.text
    third = await browser.challenge("000000", rd="/")
    assert "2 attempts left before a lockout." in third.text
    fourth = await browser.challenge("000000", rd="/")
    assert "1 attempt left before a lockout." in fourth.text
    locked = await browser.challenge("000000", rd="/")
    assert locked.status_code == 429
    assert "Try again in 15 minutes" in locked.text
    until = int(env.clock()) + env.config.throttle.lockout
    iso = re.search(r'<time datetime="([^"]+)" class="local-time">', locked.text)
    assert iso is not None and iso.group(1).startswith(
        __import__("datetime").datetime.fromtimestamp(until, __import__("datetime").UTC)
        .strftime("%Y-%m-%dT%H:%M"))
    assert re.search(r"<fieldset[^>]* disabled>", locked.text)
    env.clock.advance(5 * 60)
    later = await browser.get("/_2fa/challenge?rd=/")
    assert "Try again in 10 minutes" in later.text and re.search(r"<fieldset[^>]* disabled>",
                                                                   later.text)


async def test_enrollment_keeps_the_key_open_after_a_wrong_code_and_offers_a_link(
        env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    csrf, page = await browser.form_token("/_2fa/enroll")
    assert '<details class="manual">' in page  # closed at first
    link = re.search(r'<a class="button" href="(otpauth://totp/[^"]+)">Open in authenticator app',
                     page)
    assert link is not None and "secret=" in link.group(1)
    assert '<a href="/_2fa/settings">Cancel</a>' in page
    wrong = await browser.post("/_2fa/enroll", {"csrf": csrf, "code": "000000"})
    assert wrong.status_code == 400
    assert '<details class="manual" open>' in wrong.text


async def test_recovery_codes_complete_only_once_saved(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    csrf, page = await browser.form_token("/_2fa/enroll")
    secret = re.search(r'id="secret-key">([A-Z2-7 ]+)<', page).group(1)  # type: ignore[union-attr]
    done = await browser.post("/_2fa/enroll", {"csrf": csrf,
                                               "code": env.code(secret.replace(" ", ""))})
    assert done.status_code == 303
    text = (await browser.get(done.headers["location"])).text
    assert 'download="test-app-recovery-codes.txt"' in text  # issuer "Test App", no spaces
    assert "Capital letters and the dash do not matter" in text
    assert re.search(r'<input type="checkbox" id="saved" name="saved" value="1" required>', text)
    assert 'action="/_2fa/settings"' in text and 'name="notice" value="enabled"' in text
    unticked = await browser.get("/_2fa/settings?notice=enabled")  # the server checks too
    assert "You did not confirm that you saved your recovery codes." in unticked.text
    assert "Two-factor authentication is enabled." not in unticked.text
    ticked = await browser.get("/_2fa/settings?notice=enabled&saved=1")
    assert "Two-factor authentication is enabled." in ticked.text
    assert "You did not confirm" not in ticked.text


async def test_the_sidecars_own_404_and_405_pages_use_the_layout(env: Env) -> None:
    browser = env.browser()
    missing = await browser.get("/_2fa/nowhere", **{"accept-language": "de"})
    assert missing.status_code == 404
    assert "<h1>Seite nicht gefunden</h1>" in missing.text and 'lang="de"' in missing.text
    assert '/_2fa/static/style.css' in missing.text
    wrong = await browser.get("/_2fa/signout")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert "<h1>This page cannot do that</h1>" in wrong.text
    assert '/_2fa/static/style.css' in wrong.text


async def test_turning_off_asks_for_a_confirmation_and_comes_last(
        tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, remember_device={"enabled": True, "max_days": 30})
    async with running_env(config, clock) as env:
        browser = env.browser()
        await browser.login("alice")
        _, codes = await browser.enroll()
        csrf, page = await browser.form_token("/_2fa/settings")
        assert page.index('id="new-codes"') < page.index('id="turn-off"')
        assert 'name="confirm" value="1" required' in page
        unticked = await browser.post("/_2fa/disable", {"csrf": csrf, "code": codes[0]})
        assert unticked.status_code == 400 and "Tick the box to confirm" in unticked.text
        assert (await env.sidecar.parts.accounts.user("alice")).enrolled
        done = await browser.post("/_2fa/disable", {"csrf": csrf, "code": codes[0],
                                                    "confirm": "1"})
        assert done.status_code == 303  # the same code still works: nothing was compared
        assert not (await env.sidecar.parts.accounts.user("alice")).enrolled
