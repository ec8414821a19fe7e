"""A real sidecar process whose SQLite file is deleted, locked or read-only.

Pages answer a clear 503 and nothing half-written remains; a request carrying a valid 2FA
cookie keeps passing, since the hot path needs no database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from sidecar.accounts import Accounts
from sidecar.config import load_config
from sidecar.wiring import build_parts, make_storage
from tests.conftest import config_dict
from tests.e2e.stacks import ROOT
from tests.ports import free_port

SESSION = "upstream_session=s1"


def write_config(tmp: Path, db: Path, port: int) -> Path:
    data = config_dict(tmp, primary={"resolver": "header", "session_cookies": ["upstream_session"]},
                       storage={"sqlite": {"path": str(db)}}, server={"port": port})
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def seed(config_path: Path) -> str:
    """alice enrolled; the Cookie header of her verified browser session."""
    config = load_config(config_path)
    storage = make_storage(config)
    await storage.open()
    try:
        service = Accounts(config, storage)
        from sidecar.core import totp
        secret = await service.pending_secret("alice")
        result, _, generation = await service.complete_enrollment(
            "alice", totp.code_at(secret, time.time()), "127.0.0.1")
        assert result.check.value == "ok"
        value = build_parts(config, storage=storage).passes.issue("alice", SESSION, generation)
        return f"{SESSION}; {config.cookie.name}={value}"
    finally:
        await storage.close()


def start(config_path: Path, port: int, log: Path, prefix: list[str] | None = None
          ) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen([*(prefix or []), sys.executable, "-m", "sidecar", "serve",
                                 "--config", str(config_path)], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    try:
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise


def auth(port: int, cookie: str, user: str = "alice") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/auth/nginx", timeout=10, headers={
        "x-original-url": "http://app.test/reports", "x-original-method": "GET",
        "accept": "text/html", "remote-user": user, "cookie": cookie})


def page(port: int, path: str, cookie: str, user: str = "alice") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10, headers={
        "remote-user": user, "cookie": cookie, "accept": "text/html"})


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[int, str, Path, subprocess.Popen[bytes]]]:
    port = free_port()
    db = tmp_path / "data" / "sidecar.db"
    db.parent.mkdir()
    config_path = write_config(tmp_path, db, port)
    cookie = asyncio.run(seed(config_path))
    proc = start(config_path, port, tmp_path / "sidecar.log")
    try:
        yield port, cookie, db, proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_database_deleted_while_running(running: tuple[int, str, Path, subprocess.Popen[bytes]]
                                        ) -> None:
    port, cookie, db, _ = running
    assert auth(port, cookie).status_code == 200
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    settings = page(port, "/_2fa/settings", cookie)
    assert settings.status_code == 503 and "unavailable" in settings.text
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
    assert auth(port, cookie).status_code == 200  # the valid 2FA cookie keeps passing
    # someone never seen cannot be decided: fail closed
    assert auth(port, SESSION, user="bob").status_code == 503


def test_a_2fa_cookie_whose_generation_was_never_loaded_fails_closed(
        running: tuple[int, str, Path, subprocess.Popen[bytes]]) -> None:
    """After a restart, with the database gone before the user's state was ever read, a 2FA
    cookie cannot be checked against a revocation: 503, never 200 (it was honoured)."""
    port, cookie, db, _ = running
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    assert auth(port, cookie).status_code == 503


def test_database_locked_by_another_connection(
        running: tuple[int, str, Path, subprocess.Popen[bytes]]) -> None:
    port, cookie, db, _ = running
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        enroll = page(port, "/_2fa/enroll", SESSION, user="bob")  # would write a pending secret
        assert enroll.status_code == 503 and "Nothing was changed" in enroll.text
        assert auth(port, cookie).status_code == 200
    finally:
        other.execute("ROLLBACK")
        other.close()
    check = sqlite3.connect(db)
    assert check.execute("SELECT COUNT(*) FROM pending WHERE user_id = 'bob'").fetchone() == (0,)
    check.close()
    assert page(port, "/_2fa/enroll", SESSION, user="bob").status_code == 200


def test_database_read_only(tmp_path: Path) -> None:
    """The file and its folder read-only (as on a read-only volume), the server not root-exempt."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("this test needs root and setpriv (util-linux) in CI")
        pytest.skip("needs root and setpriv to run the server without CAP_DAC_OVERRIDE")
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    config_path = write_config(tmp_path, data / "sidecar.db", port)
    cookie = asyncio.run(seed(config_path))
    keep = sqlite3.connect(data / "sidecar.db")  # keeps -wal and -shm in place, as a live server would
    keep.execute("SELECT COUNT(*) FROM users").fetchall()
    for item in data.iterdir():
        item.chmod(0o444)
    data.chmod(0o555)
    proc = None
    try:
        proc = start(config_path, port, tmp_path / "sidecar.log",
                     [setpriv, "--bounding-set", "-dac_override,-dac_read_search"])
        assert auth(port, cookie).status_code == 200
        assert page(port, "/_2fa/settings", cookie).status_code == 200  # reads still work
        enroll = page(port, "/_2fa/enroll", SESSION, user="bob")
        assert enroll.status_code == 503 and "Nothing was changed" in enroll.text
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        data.chmod(0o755)
        for item in data.iterdir():
            item.chmod(0o644)
        keep.close()
    check = sqlite3.connect(data / "sidecar.db")
    assert check.execute("SELECT COUNT(*) FROM pending").fetchone() == (0,)
    check.close()


def test_websocket_upgrade_requests_get_a_decision(
        running: tuple[int, str, Path, subprocess.Popen[bytes]]) -> None:
    """Proxies pass Connection: Upgrade to the auth endpoint; it must still decide."""
    port, cookie, _, _ = running
    upgrade = {"connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
               "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}
    ok = httpx.get(f"http://127.0.0.1:{port}/auth/nginx", timeout=10, headers={
        "x-original-url": "http://app.test/ws", "x-original-method": "GET", "remote-user": "alice",
        "cookie": cookie, **upgrade})
    assert ok.status_code == 200 and ok.headers["remote-user"] == "alice"
    refused = httpx.get(f"http://127.0.0.1:{port}/auth/forward", timeout=10, headers={
        "x-forwarded-method": "GET", "x-forwarded-host": "app.test", "x-forwarded-uri": "/ws",
        "remote-user": "alice", "cookie": SESSION, "accept": "text/html", **upgrade})
    assert refused.status_code == 302
