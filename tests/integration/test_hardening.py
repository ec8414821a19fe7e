"""Secrets at rest, audit, throttling per client, a locked database — on a real SQLite file."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sidecar.logs import JsonFormatter
from sidecar.storage import sqlite as storage_sqlite
from tests.conftest import ENCRYPTION_KEY, Env, FakeClock, config_dict, make_config, sqlite_path, start_env

pytestmark = pytest.mark.anyio


def rows(env: Env, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(sqlite_path(env.config))
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def test_secrets_are_encrypted_at_rest(env: Env) -> None:
    browser = env.browser()
    await browser.login("alice")
    _, page = await browser.form_token("/_2fa/enroll")  # a pending secret
    (pending,) = rows(env, "SELECT secret FROM pending")
    secret, codes = await browser.enroll()
    (stored,) = rows(env, "SELECT secret FROM users WHERE user_id = 'alice'")
    for value in (pending[0], stored[0]):
        assert isinstance(value, str) and value.startswith("v1.")
        assert secret not in value and secret.lower() not in value.lower()
    dump = "\n".join(map(str, rows(env, "SELECT * FROM recovery_codes")))
    assert all(code not in dump and code.replace("-", "") not in dump for code in codes)


async def test_a_secret_moved_to_another_user_does_not_open(env: Env) -> None:
    alice = env.browser()
    await alice.login("alice")
    await alice.enroll()
    bob = env.browser()
    await bob.login("bob")
    await bob.enroll()
    await bob.logout()
    await bob.login("bob")
    db = sqlite3.connect(sqlite_path(env.config))
    db.execute("UPDATE users SET secret = (SELECT secret FROM users WHERE user_id = 'alice')"
               " WHERE user_id = 'bob'")
    db.commit()
    db.close()
    response = await bob.challenge("123456")
    assert response.status_code == 503 and "unavailable" in response.text


def test_keys_rotate(tmp_path: Path) -> None:
    """Enroll under key 1, rotate to key 2 with the CLI, drop key 1: the code still works."""
    import asyncio

    from tests.conftest import FakeClock as Clock

    clock = Clock()
    first = config_dict(tmp_path)
    enrolled: dict[str, str] = {}

    async def enroll() -> None:
        from sidecar.config import parse_config
        async for env in start_env(parse_config(first, environ={}), clock):
            browser = env.browser()
            await browser.login("alice")
            enrolled["secret"], _ = await browser.enroll()

    asyncio.run(enroll())
    path = tmp_path / "config.yaml"
    both = dict(first, secrets=dict(first["secrets"], encryption_keys=[ENCRYPTION_KEY, "n" * 40]))
    path.write_text(yaml.safe_dump(both))
    result = subprocess.run([sys.executable, "-m", "sidecar", "keys", "--config", str(path), "rotate"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "re-encrypted 1" in result.stdout
    only_new = dict(first, secrets=dict(first["secrets"], encryption_keys=["n" * 40]))

    async def challenge() -> None:
        from sidecar.config import parse_config
        async for env in start_env(parse_config(only_new, environ={}), clock):
            browser = env.browser()
            await browser.login("alice")
            clock.advance(30)
            assert (await browser.challenge(env.code(enrolled["secret"]))).status_code == 303

    asyncio.run(challenge())


async def test_audit_lines_and_events_never_hold_secrets(env: Env,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sidecar")
    browser = env.browser()
    await browser.login("alice")
    secret, codes = await browser.enroll()
    await browser.logout()
    await browser.login("alice")
    wrong = next(c for c in ("918273", "827364", "736455") if c != env.code(secret))
    assert (await browser.challenge(wrong)).status_code == 400
    assert (await browser.challenge(codes[3])).status_code == 303
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name == "sidecar.audit"]
    events = [json.loads(line)["event"] for line in lines]
    assert events == ["enabled", "challenge_failed", "recovery_code_used"]
    used = json.loads(lines[-1])
    assert used["user"] == "alice" and used["remaining"] == 19 and used["client"]
    everything = "\n".join(formatter.format(r) for r in caplog.records)
    everything += "\n".join(map(str, rows(env, "SELECT * FROM events")))
    forbidden = [secret, codes[3], codes[3].replace("-", ""), wrong,
                 browser.cookies["totp_sidecar"], browser.cookies["demo_session"]]
    assert not [f for f in forbidden if f in everything]
    stored = [r[0] for r in rows(env, "SELECT event FROM events ORDER BY id")]
    assert stored == events


async def test_one_client_failing_across_users_is_throttled(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, throttle={"max_failures": 10, "max_failures_per_client": 4})
    async for env in start_env(config, clock):
        people = []
        for user in ("alice", "bob", "carol"):
            browser = env.browser()
            await browser.login(user)
            secret, _ = await browser.enroll()
            await browser.logout()
            await browser.login(user)
            people.append((browser, secret))
        statuses = [(await people[i % 3][0].challenge("000000")).status_code for i in range(4)]
        assert statuses == [400, 400, 400, 429]
        clock.advance(30)
        browser, secret = people[1]
        blocked = await browser.challenge(env.code(secret))
        assert blocked.status_code == 429  # even the right code, from this client, for a while
        clock.advance(config.throttle.window + 1)
        assert (await browser.challenge(env.code(secret))).status_code == 303


async def test_locked_database_gives_503_and_changes_nothing(tmp_path: Path, clock: FakeClock,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_sqlite, "BUSY_TIMEOUT_MS", 300)
    async for env in start_env(make_config(tmp_path), clock):
        alice = env.browser()
        await alice.login("alice")
        await alice.enroll()
        assert (await alice.auth()).status_code == 200
        bob = env.browser()
        await bob.login("bob")
        csrf, page = await bob.form_token("/_2fa/enroll")
        secret = re.search(r'id="secret-key">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")  # type: ignore[union-attr]
        other = sqlite3.connect(sqlite_path(env.config), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            done = await bob.post("/_2fa/enroll", {"csrf": csrf, "code": env.code(secret)})
            assert done.status_code == 503 and "Nothing was changed" in done.text
            assert (await alice.auth()).status_code == 200  # verified requests keep passing
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert rows(env, "SELECT COUNT(*) FROM recovery_codes WHERE user_id = 'bob'") == [(0,)]
        assert not (await env.sidecar.parts.storage.get_user("bob")).enrolled
        # after the lock is gone the same enrollment goes through
        clock.advance(30)
        again = await bob.post("/_2fa/enroll", {"csrf": csrf, "code": env.code(secret)})
        assert again.status_code == 303 and again.headers["location"] == "/_2fa/recovery-codes"


async def test_forward_auth_answers_are_not_cacheable(env: Env) -> None:
    browser = env.browser()
    for response in (await browser.auth(), await browser.auth(accept="application/json")):
        assert response.headers["cache-control"] == "no-store, private"
        assert "Cookie" in response.headers["vary"]
