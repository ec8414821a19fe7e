"""The command line, run as an operator runs it: a real process, a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sidecar.accounts import Accounts, Check
from sidecar.config import load_config
from sidecar.core import totp
from sidecar.wiring import make_storage
from tests.conftest import config_dict


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar", *args], capture_output=True, text=True,
                          timeout=60)


def write_config(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict(tmp_path, **overrides)))
    return path


def test_check_config_ok(tmp_path: Path) -> None:
    result = run("check-config", str(write_config(tmp_path)))
    assert result.returncode == 0 and "OK" in result.stdout


def test_check_config_names_every_bad_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, cookie={"max_age": "soon"}, colour="blue",
                        rules=[{"path_regex": "(", "level": "bypass"}])
    result = run("check-config", str(path))
    assert result.returncode == 2
    for key in ("cookie.max_age", "colour", "rules[0].path_regex"):
        assert key in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, secrets={"signing_keys": ["weak"], "hash_key": "h" * 40})
    result = run("serve", "--config", str(path))
    assert result.returncode == 2
    assert "secrets.signing_keys" in result.stderr and "too short" in result.stderr


def test_serve_refuses_a_database_in_a_missing_folder(tmp_path: Path) -> None:
    path = write_config(tmp_path, storage={"sqlite": {"path": str(tmp_path / "no" / "db.sqlite")}})
    result = run("serve", "--config", str(path))
    assert result.returncode != 0 and "storage.sqlite.path" in result.stderr


def test_check_config_refuses_header_users_from_everyone(tmp_path: Path) -> None:
    path = write_config(tmp_path, primary={"resolver": "header"},
                        server={"trusted_proxies": ["10.0.0.0/8", "0.0.0.0/0"]})
    result = run("check-config", str(path))
    assert result.returncode == 2 and "server.trusted_proxies" in result.stderr
    assert "0.0.0.0/0" in result.stderr and "Traceback" not in result.stderr
    served = run("serve", "--config", str(path), "--port", "1")
    assert served.returncode == 2 and "server.trusted_proxies" in served.stderr


def test_check_config_prints_warnings_and_passes(tmp_path: Path) -> None:
    path = write_config(tmp_path, server={"trusted_proxies": ["::/0"]},
                        primary={"resolver": "introspect",
                                 "introspect": {"url": "http://app.internal/api/me"}})
    result = run("check-config", str(path))
    assert result.returncode == 0 and "OK" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert [w.split(":")[1].strip() for w in warnings] == ["server.trusted_proxies",
                                                          "primary.introspect.url"], result.stderr
    empty = write_config(tmp_path, server={"trusted_proxies": []}, primary={"resolver": "header"})
    result = run("check-config", str(empty))
    assert result.returncode == 0 and result.stderr.startswith("warning: server.trusted_proxies: ")


def test_check_config_without_warnings_is_quiet(tmp_path: Path) -> None:
    path = write_config(tmp_path, primary={"resolver": "introspect",
                                           "introspect": {"url": "http://127.0.0.1:8000/api/me"}})
    result = run("check-config", str(path))
    assert result.returncode == 0 and result.stderr == ""


def test_serve_logs_config_warnings(tmp_path: Path) -> None:
    path = write_config(tmp_path, server={"trusted_proxies": ["0.0.0.0/0"]},
                        storage={"sqlite": {"path": str(tmp_path / "no" / "db.sqlite")}})
    result = run("serve", "--config", str(path))  # stops at the storage check, after the warnings
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    warned = [entry for entry in logged if entry.get("event") == "config_warning"]
    assert [entry["level"] for entry in warned] == ["warning", "warning"], result.stderr
    assert warned[0]["message"].startswith("server.trusted_proxies: ")
    assert warned[1]["message"].startswith("primary.introspect.url: ")


def test_missing_config_file(tmp_path: Path) -> None:
    result = run("check-config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot read" in result.stderr


async def enroll_and_lock(path: Path) -> None:
    config = load_config(path)
    storage = make_storage(config)
    await storage.open()
    try:
        service = Accounts(config, storage)
        secret = await service.pending_secret("alice")
        result, codes, _ = await service.complete_enrollment("alice", totp.code_at(secret, time.time()),
                                                            "192.0.2.1")
        assert result.check is Check.OK and len(codes) == 20
        for code in codes[:18]:
            assert (await service.check("alice", code, "192.0.2.1")).check is Check.OK
        for _ in range(config.throttle.max_failures):
            await service.check("alice", "000000", "192.0.2.1")
    finally:
        await storage.close()


def test_users_list_show_unlock_reset(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    asyncio.run(enroll_and_lock(path))
    listed = run("users", "--config", str(path), "list")
    assert listed.returncode == 0 and "alice: 2FA on" in listed.stdout and "locked until" in listed.stdout
    assert "2 recovery codes left" in listed.stdout
    assert run("users", "--config", str(path), "unlock", "alice").returncode == 0
    shown = run("users", "--config", str(path), "show", "alice").stdout
    assert "locked until" not in shown.splitlines()[0]
    for event in ("recovery_code_used", "challenge_failed", "locked", "unlocked"):
        assert event in shown  # the audit trail, newest first
    assert all(code not in shown for code in ("000000",))
    assert run("users", "--config", str(path), "unlock", "alice").returncode == 1
    reset = run("users", "--config", str(path), "reset", "alice")
    assert reset.returncode == 0 and "removed" in reset.stdout
    assert "2FA off" in run("users", "--config", str(path), "show", "alice").stdout
    assert run("users", "--config", str(path), "reset", "alice").returncode == 1
