"""``users show`` lists a user's security keys; ``users reset`` removes them (real processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sidecar.config import load_config
from sidecar.storage import Credential
from sidecar.wiring import make_storage
from tests.integration.test_cli import run, write_config

ADDED = 1_800_000_000


async def add_key(path: Path) -> None:
    storage = make_storage(load_config(path))
    await storage.open()
    try:
        key = Credential("cred-1", "alice", "pk", 0, "YubiKey 5", ("usb",), ADDED)
        assert await storage.add_credential(key, ["h1"], ADDED) == 1
    finally:
        await storage.close()


async def keys_of(path: Path) -> list[Credential]:
    storage = make_storage(load_config(path))
    await storage.open()
    try:
        return await storage.credentials("alice")
    finally:
        await storage.close()


def test_users_show_lists_keys_and_reset_removes_them(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    asyncio.run(add_key(path))
    shown = run("users", "--config", str(path), "show", "alice")
    assert shown.returncode == 0, shown.stderr
    assert "alice: 2FA on since 2027-01-15T08:00:00+00:00, 1 recovery codes left" in shown.stdout
    assert "security key 'YubiKey 5': added 2027-01-15T08:00:00+00:00, not used yet" in shown.stdout
    reset = run("users", "--config", str(path), "reset", "alice")
    assert reset.returncode == 0 and "security keys" in reset.stdout
    assert asyncio.run(keys_of(path)) == []
    again = run("users", "--config", str(path), "reset", "alice")
    assert again.returncode == 1 and "was not on" in again.stdout
