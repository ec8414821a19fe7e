"""Security keys and passkeys through the real ASGI apps, a real SQLite file and py_webauthn,
answered by a software authenticator (``tests/authenticator.py``): each refusal below is one
check of the server, and fails when that check is removed."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.primary import IntrospectResolver
from sidecar.web.app import create_app
from tests.authenticator import SoftKey, b64, page_options, unb64
from tests.conftest import Browser, Env, FakeClock, make_config, running_env

pytestmark = pytest.mark.anyio
ORIGIN = "http://app.test"  # the tests' Browser asks for http://app.test


async def register(browser: Browser, key: SoftKey, name: str = "YubiKey 5",
                   origin: str = ORIGIN, rp_id: str | None = None) -> httpx.Response:
    csrf, page = await browser.form_token("/_2fa/settings")
    answer = key.register(page_options(page, "create"), origin, rp_id)
    return await browser.post("/_2fa/keys/add", {"csrf": csrf, "name": name, "credential": answer})


async def key_page(browser: Browser, rd: str = "/") -> tuple[str, dict[str, Any]]:
    csrf, page = await browser.form_token(f"/_2fa/challenge?rd={rd}")
    return csrf, page_options(page, "get")


async def answer(browser: Browser, csrf: str, assertion: str, rd: str = "/") -> httpx.Response:
    return await browser.post("/_2fa/challenge", {"csrf": csrf, "rd": rd, "mode": "key",
                                                  "assertion": assertion})


async def with_key(env: Env, user: str = "alice", key: SoftKey | None = None) -> tuple[Browser, SoftKey]:
    """``user`` signed in with 2FA on by a key (its first factor), then signed in again."""
    browser = env.browser()
    await browser.login(user)
    key = key or SoftKey()
    made = await register(browser, key)
    assert made.status_code == 303 and made.headers["location"] == "/_2fa/recovery-codes", made.text
    done = await browser.get("/_2fa/recovery-codes")  # POST, then GET: Back never resubmits
    assert done.status_code == 200, done.text
    assert len(re.findall(r"<code>[a-z2-9]{5}-[a-z2-9]{5}</code>", done.text)) == 20
    await browser.logout()
    await browser.login(user)
    return browser, key


async def passes(browser: Browser) -> bool:
    return (await browser.auth()).status_code == 200


async def test_a_first_key_turns_2fa_on_and_passes_the_challenge(env: Env) -> None:
    browser, key = await with_key(env)
    storage = env.sidecar.parts.storage
    user = await storage.get_user("alice")
    assert user.enrolled and user.secret is None and user.recovery_left == 20
    (stored,) = await storage.credentials("alice")
    assert (stored.name, stored.transports, stored.user_id) == ("YubiKey 5", ("usb",), "alice")
    assert not await passes(browser)
    csrf, options = await key_page(browser)
    assert options["rpId"] == "app.test" and options["userVerification"] == "preferred"
    assert [c["id"] for c in options["allowCredentials"]] == [b64(key.credential_id)]
    done = await answer(browser, csrf, key.assert_(options, ORIGIN))
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert await passes(browser)
    (used,) = await storage.credentials("alice")
    assert used.sign_count == 1 and used.last_used == int(env.clock())
    events = [e.event for e in await storage.events("alice")]
    assert "key_used" in events
    assert "key_added" in events and "enabled" in events
    metrics = env.sidecar.parts.metrics.render().decode()
    assert 'totp_sidecar_key_checks_total{app="default",result="ok"} 1.0' in metrics


async def test_registration_options_ask_for_no_attestation_and_allow_passkeys(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    _, page = await browser.form_token("/_2fa/settings")
    options = page_options(page, "create")
    assert options["rp"]["id"] == "app.test"
    assert options["attestation"] == "none"
    assert options["authenticatorSelection"] == {"residentKey": "preferred",
                                                 "requireResidentKey": False,
                                                 "userVerification": "preferred"}
    assert "alice" not in json.dumps(options["user"]["id"])


async def test_a_replayed_assertion_is_refused(env: Env) -> None:
    browser, key = await with_key(env, key=SoftKey(count_up=False))  # no counter to catch it
    csrf, options = await key_page(browser)
    assertion = key.assert_(options, ORIGIN)
    assert (await answer(browser, csrf, assertion)).status_code == 303
    await browser.logout()
    await browser.login("alice")
    csrf, _ = await key_page(browser)  # a new challenge; the old answer names the used one
    again = await answer(browser, csrf, assertion)
    assert again.status_code == 400 and "ran out or was used already" in again.text
    assert not await passes(browser)


async def test_an_assertion_for_another_rp_id_is_refused(env: Env) -> None:
    browser, key = await with_key(env)
    csrf, options = await key_page(browser)
    refused = await answer(browser, csrf, key.assert_(options, ORIGIN, rp_id="evil.test"))
    assert refused.status_code == 400 and "was not accepted" in refused.text
    assert not await passes(browser)


async def test_an_assertion_from_another_origin_is_refused(env: Env) -> None:
    browser, key = await with_key(env)
    csrf, options = await key_page(browser)
    refused = await answer(browser, csrf, key.assert_(options, "http://app.test.evil.test"))
    assert refused.status_code == 400
    assert not await passes(browser)


async def test_a_challenge_of_another_session_is_refused(env: Env) -> None:
    browser, key = await with_key(env, key=SoftKey(count_up=False))
    other = env.browser()  # the same user in another app session (someone with the password)
    await other.login("alice")
    _, options = await key_page(other)
    csrf, _ = await key_page(browser)
    refused = await answer(browser, csrf, key.assert_(options, ORIGIN))
    assert refused.status_code == 400 and "ran out or was used already" in refused.text
    assert not await passes(browser)


async def test_a_challenge_expires(env: Env) -> None:
    browser, key = await with_key(env)
    csrf, options = await key_page(browser)
    env.clock.advance(301)
    refused = await answer(browser, csrf, key.assert_(options, ORIGIN))
    assert refused.status_code == 400 and not await passes(browser)


async def test_a_counter_going_backwards_is_refused_and_audited(env: Env) -> None:
    browser, key = await with_key(env)
    csrf, options = await key_page(browser)
    assert (await answer(browser, csrf, key.assert_(options, ORIGIN, counter=5))).status_code == 303
    await browser.logout()
    await browser.login("alice")
    csrf, options = await key_page(browser)
    refused = await answer(browser, csrf, key.assert_(options, ORIGIN, counter=3))
    assert refused.status_code == 400 and not await passes(browser)
    (event,) = [e for e in await env.sidecar.parts.storage.events("alice")
                if e.event == "key_counter_error"]
    assert (event.event, event.detail["stored"], event.detail["received"]) == (
        "key_counter_error", 5, 3)
    assert (await env.sidecar.parts.storage.credentials("alice"))[0].sign_count == 5


async def test_counters_of_zero_on_both_sides_are_allowed(env: Env) -> None:
    browser, key = await with_key(env, key=SoftKey(count_up=False))
    for _ in range(2):
        csrf, options = await key_page(browser)
        assert (await answer(browser, csrf, key.assert_(options, ORIGIN))).status_code == 303
        await browser.logout()
        await browser.login("alice")


async def test_a_key_of_another_user_is_refused(env: Env) -> None:
    alice, _ = await with_key(env, "alice")
    _, bobs = await with_key(env, "bob")
    csrf, options = await key_page(alice)
    refused = await answer(alice, csrf, bobs.assert_(options, ORIGIN))
    assert refused.status_code == 400 and not await passes(alice)
    metrics = env.sidecar.parts.metrics.render().decode()
    assert 'totp_sidecar_key_checks_total{app="default",result="foreign"} 1.0' in metrics
    assert (await env.sidecar.parts.storage.credentials("bob"))[0].sign_count == 0


async def test_tampered_client_data_is_refused(env: Env) -> None:
    browser, key = await with_key(env)
    csrf, options = await key_page(browser)
    signed = json.loads(key.assert_(options, ORIGIN))
    client = json.loads(unb64(signed["response"]["clientDataJSON"]))
    client["tokenBinding"] = {"status": "supported"}  # still well-formed, no longer what was signed
    signed["response"]["clientDataJSON"] = b64(json.dumps(client).encode())
    refused = await answer(browser, csrf, json.dumps(signed))
    assert refused.status_code == 400 and not await passes(browser)


async def test_a_credential_id_is_registered_once(env: Env) -> None:
    _, key = await with_key(env, "alice")
    bob = env.browser()
    await bob.login("bob")
    copy = SoftKey(credential_id=key.credential_id)
    refused = await register(bob, copy)
    assert refused.status_code == 400 and "registered already" in refused.text
    assert not (await env.sidecar.parts.storage.get_user("bob")).enrolled
    assert [k.user_id for k in await env.sidecar.parts.storage.credentials("alice")] == ["alice"]


async def test_registration_for_another_origin_is_refused(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    refused = await register(browser, SoftKey(), origin="http://evil.test")
    assert refused.status_code == 400
    assert not (await env.sidecar.parts.storage.get_user("alice")).enrolled


async def test_key_answers_are_throttled(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, throttle={"max_failures": 3, "window": "15m",
                                             "lockout": "15m"})
    async with running_env(config, clock) as env:
        browser, key = await with_key(env)
        for _ in range(3):
            csrf, options = await key_page(browser)
            await answer(browser, csrf, key.assert_(options, ORIGIN, rp_id="evil.test"))
        csrf, options = await key_page(browser)
        locked = await answer(browser, csrf, key.assert_(options, ORIGIN))
        assert locked.status_code == 429 and not await passes(browser)


async def test_rename_and_remove_keys(env: Env) -> None:
    browser, first = await with_key(env)
    csrf, options = await key_page(browser)
    await answer(browser, csrf, first.assert_(options, ORIGIN))
    env.clock.advance(60)  # listed by when they were added
    assert (await register(browser, SoftKey(), name="  Phone\x00 ")).status_code == 303
    storage = env.sidecar.parts.storage
    keys = await storage.credentials("alice")
    assert [k.name for k in keys] == ["YubiKey 5", "Phone"]
    csrf, page = await browser.form_token("/_2fa/settings")
    assert "Phone" in page and "not used yet" in page and "last used" in page
    await browser.post("/_2fa/keys/rename", {"csrf": csrf, "key": keys[1].credential_id,
                                             "name": "iPhone"})
    assert [k.name for k in await storage.credentials("alice")] == ["YubiKey 5", "iPhone"]
    gone = await browser.post("/_2fa/keys/remove", {"csrf": csrf, "key": keys[1].credential_id})
    assert gone.status_code == 303 and gone.headers["location"].endswith("notice=key_removed")
    assert [k.name for k in await storage.credentials("alice")] == ["YubiKey 5"]
    assert (await storage.get_user("alice")).enrolled and await passes(browser)


async def test_removing_the_last_key_asks_for_a_recovery_code_and_turns_2fa_off(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    key = SoftKey()
    await register(browser, key)
    done = await browser.get("/_2fa/recovery-codes")
    codes = re.findall(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>", done.text)
    csrf, page = await browser.form_token("/_2fa/settings")
    assert 'id="remove-code"' in page
    (stored,) = await env.sidecar.parts.storage.credentials("alice")
    form = {"csrf": csrf, "key": stored.credential_id, "confirm": "1"}
    wrong = await browser.post("/_2fa/keys/remove", form | {"code": "aaaaa-aaaaa"})
    assert wrong.status_code == 400 and await env.sidecar.parts.storage.credentials("alice")
    unticked = await browser.post("/_2fa/keys/remove", {"csrf": csrf, "key": stored.credential_id,
                                                        "code": codes[0]})
    assert unticked.status_code == 400 and await env.sidecar.parts.storage.credentials("alice")
    off = await browser.post("/_2fa/keys/remove", form | {"code": codes[1]})
    assert off.status_code == 303 and off.headers["location"].endswith("notice=disabled")
    user = await env.sidecar.parts.storage.get_user("alice")
    assert not user.enrolled and user.recovery_left == 0
    assert not await env.sidecar.parts.storage.credentials("alice")


async def test_turning_2fa_off_and_an_admin_reset_remove_every_key(env: Env) -> None:
    browser, key = await with_key(env)
    accounts, storage = env.sidecar.parts.accounts, env.sidecar.parts.storage
    generation = (await storage.get_user("alice")).generation
    assert await accounts.disable("alice", actor="admin")
    assert not await storage.credentials("alice")
    assert (await storage.get_user("alice")).generation == generation + 1


async def test_the_prompt_offers_the_key_first_then_the_app_and_recovery(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    secret, _ = await browser.enroll()
    assert (await register(browser, SoftKey())).status_code == 303  # beside the app: no new codes
    assert (await env.sidecar.parts.storage.get_user("alice")).recovery_left == 20
    await browser.logout()
    await browser.login("alice")
    page = (await browser.get("/_2fa/challenge?rd=/")).text
    assert page.index("Use your security key") < page.index("Use your authenticator app")
    assert "Switch to recovery code" in page and 'name="assertion"' in page
    assert "needs JavaScript" in page and "/_2fa/static/webauthn.js" in page
    app = await browser.challenge(env.code(secret, 1))  # the code way works without the key
    assert app.status_code == 303 and await passes(browser)


async def test_a_user_with_keys_only_adds_an_app_without_new_recovery_codes(env: Env) -> None:
    browser, key = await with_key(env)
    csrf, options = await key_page(browser)
    await answer(browser, csrf, key.assert_(options, ORIGIN))
    page = (await browser.get("/_2fa/settings")).text
    assert "Set up an authenticator app" in page
    _, codes = await browser.form_token("/_2fa/enroll")
    secret = re.search(r'id="secret-key">([A-Z2-7 ]+)<', codes)
    assert secret is not None
    csrf, _ = await browser.form_token("/_2fa/enroll")
    done = await browser.post("/_2fa/enroll", {"csrf": csrf,
                                               "code": env.code(secret.group(1).replace(" ", ""))})
    assert done.status_code == 303 and done.headers["location"].endswith("notice=app_added")
    user = await env.sidecar.parts.storage.get_user("alice")
    assert user.secret is not None and user.recovery_left == 20 and await passes(browser)


async def test_api_clients_of_a_user_with_keys_only_are_told_what_works(env: Env) -> None:
    await with_key(env)
    import base64

    auth = "Basic " + base64.b64encode(b"alice:alice-password").decode()
    for otp in (None, "123456"):
        headers = {"accept": "application/json", "authorization": auth,
                   "x-original-url": "http://app.test/api/data", "x-original-method": "GET"}
        if otp:
            headers["x-otp"] = otp
        refused = await env.client.get("/auth/nginx", headers=headers)
        assert refused.status_code == 401 and refused.json()["error"] == "otp_required"
        assert "authenticator-app code" in refused.json()["detail"]
        assert "token" in refused.json()["detail"]


async def test_key_forms_need_their_csrf_token(env: Env) -> None:
    browser, key = await with_key(env)
    _, options = await key_page(browser)
    forged = await browser.post("/_2fa/challenge", {"rd": "/", "mode": "key",
                                                    "assertion": key.assert_(options, ORIGIN)})
    assert forged.status_code == 403 and not await passes(browser)
    csrf, options = await key_page(browser)
    cross = await browser.post("/_2fa/challenge", {"csrf": csrf, "rd": "/", "mode": "key",
                                                   "assertion": key.assert_(options, ORIGIN)},
                               **{"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403 and not await passes(browser)


LANGUAGES = {  # "Use your security key", "Security keys and passkeys" in each language
    "de": ("Sicherheitsschlüssel verwenden", "Sicherheitsschlüssel und Passkeys"),
    "fr": ("Utiliser votre clé de sécurité", "Clés de sécurité et clés d’accès"),
    "es": ("Usar tu llave de seguridad", "Llaves de seguridad y llaves de acceso"),
    "ja": ("セキュリティキーを使う", "セキュリティキーとパスキー"),
}


@pytest.mark.parametrize("language", sorted(LANGUAGES))
async def test_the_key_pages_speak_every_language(env: Env, language: str) -> None:
    browser, key = await with_key(env)
    button, heading = LANGUAGES[language]
    prompt = await browser.get("/_2fa/challenge?rd=/", **{"accept-language": language})
    assert f'lang="{language}"' in prompt.text and button in prompt.text
    assert "Use your security key" not in prompt.text and "JavaScript" in prompt.text
    csrf, options = await key_page(browser)
    refused = await browser.post("/_2fa/challenge", {
        "csrf": csrf, "rd": "/", "mode": "key",
        "assertion": key.assert_(options, ORIGIN, rp_id="evil.test")},
        **{"accept-language": language})
    assert refused.status_code == 400 and "Your security key's answer" not in refused.text
    csrf, options = await key_page(browser)
    await answer(browser, csrf, key.assert_(options, ORIGIN))
    settings = await browser.get("/_2fa/settings", **{"accept-language": language})
    assert heading in settings.text and "Security keys and passkeys" not in settings.text


async def test_keys_of_another_user_cannot_be_renamed_or_removed(env: Env) -> None:
    alice, key = await with_key(env, "alice")
    csrf, options = await key_page(alice)
    await answer(alice, csrf, key.assert_(options, ORIGIN))
    await with_key(env, "bob")
    (bobs,) = await env.sidecar.parts.storage.credentials("bob")
    csrf, _ = await alice.form_token("/_2fa/settings")
    for action in ("rename", "remove"):
        done = await alice.post(f"/_2fa/keys/{action}", {"csrf": csrf, "key": bobs.credential_id,
                                                         "name": "mine", "code": "x", "confirm": "1"})
        assert done.status_code in (303, 400)
        assert "notice=key_" not in done.headers.get("location", "")
    assert await env.sidecar.parts.storage.credentials("bob") == [bobs]
    assert (await env.sidecar.parts.storage.get_user("bob")).enrolled


async def test_each_host_is_its_own_relying_party(env: Env) -> None:
    """Several apps behind one sidecar: the RP ID is the host the page was asked for."""
    browser, key = await with_key(env)  # registered at app.test
    browser.host = "other.test"
    csrf, options = await key_page(browser)
    assert options["rpId"] == "other.test"
    refused = await answer(browser, csrf, key.assert_(options, ORIGIN, rp_id="app.test"))
    assert refused.status_code == 400
    csrf, options = await key_page(browser)
    refused = await answer(browser, csrf, key.assert_(options, ORIGIN))  # from app.test's origin
    assert refused.status_code == 400
    browser.host = "app.test"
    csrf, options = await key_page(browser)
    assert (await answer(browser, csrf, key.assert_(options, ORIGIN))).status_code == 303


async def test_a_settings_page_read_before_2fa_was_turned_on_adds_no_key(env: Env) -> None:
    """The attacker has alice's password, not her phone. On instance B (which has not yet read
    the change that alice just turned 2FA on, on instance A) his settings page still says "2FA
    off" and hands out a key registration. His key's answer must not be stored: storage checks
    that 2FA is still off when the first key is written, and he gets no 2FA pass."""
    other = create_app(env.config, clock=env.clock,
                       resolver=IntrospectResolver(env.config, client=env.app_client))
    await other.parts.storage.open()
    await other.parts.accounts.states.poll()  # B has read the feed: its memory is trusted
    on_b = httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://app.test")
    try:
        attacker = replace(env, sidecar=other, client=on_b).browser()
        await attacker.login("alice")
        csrf, page = await attacker.form_token("/_2fa/settings")
        options = page_options(page, "create")
        victim = env.browser()
        await victim.login("alice")
        await victim.enroll()  # on A: 2FA is on, B does not know yet
        answer = SoftKey().register(options, ORIGIN, None)
        sent = await attacker.post("/_2fa/keys/add", {"csrf": csrf, "name": "mine",
                                                       "credential": answer})
        assert sent.status_code in (303, 400) and "recovery-codes" not in sent.headers.get(
            "location", "")
        assert await env.sidecar.parts.storage.credentials("alice") == []
        assert "totp_sidecar" not in attacker.cookies
        assert (await attacker.auth()).status_code == 401  # still asked for alice's code
    finally:
        await on_b.aclose()
        await other.parts.aclose()


async def test_an_ip_address_host_offers_no_key_and_says_why(env: Env) -> None:
    """Browsers take no key for an IP address (WebAuthn wants a host name): the pages there
    say so, offer no ceremony, and a keys-only user signs in with a recovery code."""
    browser, _ = await with_key(env)  # 2FA on by a key, on app.test
    on_ip = Browser(env, host="127.0.0.1")
    on_ip.cookies = dict(browser.cookies)
    prompt = await on_ip.get("/_2fa/challenge?rd=/")
    assert prompt.status_code == 200
    assert "cannot be used at this address" in prompt.text
    assert 'data-webauthn="get"' not in prompt.text and 'id="code"' in prompt.text
    assert "Enter one of your saved recovery codes" in prompt.text
    fresh = env.browser()
    fresh.host = "127.0.0.1"
    await fresh.login("bob")  # 2FA off: settings would offer a first key
    page = (await fresh.get("/_2fa/settings")).text
    assert "cannot be used at this address" in page and 'data-webauthn="create"' not in page
    assert "webauthn.js" not in page
