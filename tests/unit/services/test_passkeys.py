"""The security-key service's pure parts, and the service over the in-memory storage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.accounts import Accounts
from sidecar.notify import SUBJECTS, Notice, mail_text
from sidecar.passkeys import KeyCheck, Passkeys, clean_name, relying_party
from sidecar.web.keys import choose_mode
from tests.authenticator import SoftKey, b64
from tests.conftest import FakeClock, make_config
from tests.fakes import MemoryStorage

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("scheme", "host", "rp_id", "origin"), [
    ("https", "app.example.com", "app.example.com", "https://app.example.com"),
    ("http", "localhost:8080", "localhost", "http://localhost:8080"),
    ("https", "[2001:db8::1]:8443", "2001:db8::1", "https://[2001:db8::1]:8443"),
])
def test_the_rp_id_is_the_host_without_its_port(scheme: str, host: str, rp_id: str,
                                                origin: str) -> None:
    rp = relying_party(scheme, host, "Acme")
    assert (rp.rp_id, rp.origin, rp.name) == (rp_id, origin, "Acme")


def test_key_names_are_printable_single_spaced_and_bounded() -> None:
    assert clean_name("  Yubi\x00Key \t 5\n", "Security key") == "YubiKey 5"
    assert clean_name(" \x07 ", "Security key") == "Security key"
    assert len(clean_name("x" * 500, "k")) == 64


@pytest.mark.parametrize(("asked", "app", "keys", "mode"), [
    ("", True, True, "key"), ("", True, False, "totp"), ("", False, True, "key"),
    ("totp", True, True, "totp"), ("totp", False, True, "key"), ("key", True, False, "totp"),
    ("recovery", True, True, "recovery"), ("", False, False, "recovery"), ("nonsense", True, True, "key"),
])
def test_the_prompt_offers_a_key_first_then_the_app(asked: str, app: bool, keys: bool,
                                                    mode: str) -> None:
    assert choose_mode(asked, app, keys) == mode


def test_key_notices_name_the_key() -> None:
    text = mail_text(Notice("key_removed", "alice", 0, {"key": "YubiKey 5"}), "Acme")
    assert SUBJECTS["key_removed"] in text and "Key: YubiKey 5" in text


async def test_register_and_authenticate_over_the_memory_storage(tmp_path: Path) -> None:
    clock = FakeClock()
    storage = MemoryStorage()
    accounts = Accounts(make_config(tmp_path), storage, clock)
    keys = Passkeys(accounts, storage)
    rp = relying_party("https", "app.example.com", "Acme")
    soft = SoftKey()
    options = json.loads(await keys.registration_options("alice", "alice", "s1", rp))
    added = await keys.register("alice", "s1", soft.register(options, rp.origin), "Mine", rp, "c")
    assert added.check is KeyCheck.OK and len(added.codes) == 20 and added.generation == 1
    assert (await storage.get_user("alice")).enrolled
    options = json.loads(await keys.authentication_options("alice", "s1", rp) or "{}")
    answer = soft.assert_(options, rp.origin)
    assert (await keys.authenticate("alice", "s1", answer, rp, "c")).check is KeyCheck.OK
    assert (await keys.authenticate("alice", "s1", answer, rp, "c")).check is KeyCheck.NO_CHALLENGE
    assert await keys.authentication_options("bob", "s1", rp) is None
    assert not await keys.remove("alice", b64(soft.credential_id), "c")  # unconfirmed: kept
    assert (await storage.get_user("alice")).enrolled and await storage.credentials("alice")
    assert await keys.remove("alice", b64(soft.credential_id), "c", confirmed=True)
    assert not (await storage.get_user("alice")).enrolled  # the last factor: 2FA off
    assert [e.event for e in storage.events_][-2:] == ["disabled", "key_removed"]

