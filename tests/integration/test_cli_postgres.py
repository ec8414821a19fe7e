"""The command line on PostgreSQL: the same operator tasks, and a clear line when unreachable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.accounts import Accounts
from sidecar.config import load_config
from sidecar.wiring import make_storage
from tests.integration.test_cli import enroll_and_lock, run, write_config
from tests.pg import fresh_database_sync
from tests.ports import free_port


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_database_sync() as value:
        yield value


def test_serve_refuses_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    dsn = f"postgresql://totp:pa55-word@127.0.0.1:{free_port()}/totp"
    path = write_config(tmp_path, storage={"postgres": {"dsn": dsn}},
                        primary={"resolver": "introspect",
                                 "introspect": {"url": "http://127.0.0.1:1/api/me"}})
    result = run("serve", "--config", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("totp-sidecar: storage.postgres: cannot open the PostgreSQL")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and "pa55" not in result.stderr


def test_users_list_show_unlock_reset(tmp_path: Path, dsn: str) -> None:
    (tmp_path / "dsn").write_text(dsn)
    path = write_config(tmp_path, storage={"postgres": {"dsn_file": "dsn"}})
    asyncio.run(enroll_and_lock(path))
    listed = run("users", "--config", str(path), "list")
    assert listed.returncode == 0 and "alice: 2FA on" in listed.stdout and "locked until" in listed.stdout
    assert run("users", "--config", str(path), "unlock", "alice").returncode == 0
    assert "challenge_failed" in run("users", "--config", str(path), "show", "alice").stdout
    assert run("users", "--config", str(path), "reset", "alice").returncode == 0
    assert "2FA off" in run("users", "--config", str(path), "show", "alice").stdout


def test_keys_rotate(tmp_path: Path, dsn: str) -> None:
    old = "o" * 40
    path = write_config(tmp_path, storage={"postgres": {"dsn": dsn}},
                        secrets={"signing_keys": ["k" * 40], "hash_key": "h" * 40,
                                 "encryption_keys": [old]})
    asyncio.run(_pending(path))
    path = write_config(tmp_path, storage={"postgres": {"dsn": dsn}},
                        secrets={"signing_keys": ["k" * 40], "hash_key": "h" * 40,
                                 "encryption_keys": [old, "n" * 40]})
    rotated = run("keys", "--config", str(path), "rotate")
    assert rotated.returncode == 0 and "re-encrypted 1 secret(s)" in rotated.stdout, rotated.stderr
    assert "re-encrypted 0 secret(s)" in run("keys", "--config", str(path), "rotate").stdout


async def _pending(path: Path) -> None:
    config = load_config(path)
    storage = make_storage(config)
    await storage.open()
    try:
        await Accounts(config, storage).pending_secret("carol")
    finally:
        await storage.close()
