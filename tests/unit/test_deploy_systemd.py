"""deploy/systemd: the unit passes ``systemd-analyze verify``, is hardened, and the config it
points at passes ``totp-sidecar check-config`` with dummy credential files."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNIT = SYSTEMD / "totp-sidecar.service"
CONFIG = SYSTEMD / "config.yaml"
INSTALLED_BINARY = "/opt/totp-sidecar/bin/totp-sidecar"
INSTALLED_CONFIG = "/etc/totp-sidecar/config.yaml"
CREDENTIALS = "/run/credentials/totp-sidecar.service"
STATE = "/var/lib/totp-sidecar"
SECRETS = ("signing_keys", "hash_key", "encryption_keys")
CI = os.environ.get("CI", "").lower() == "true"


def directives() -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, a key given several times with all its values."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def one(key: str) -> str:
    values = directives()[key]
    assert len(values) == 1, f"{key} is given {len(values)} times"
    return values[0]


def sidecar_binary() -> str:
    path = Path(sys.executable).parent / "totp-sidecar"
    return str(path) if path.exists() else shutil.which("totp-sidecar") or pytest.fail(
        "no totp-sidecar command next to the test interpreter or on PATH")


def test_unit_is_hardened() -> None:
    for key, value in {
        "DynamicUser": "yes", "ProtectSystem": "strict", "StateDirectory": "totp-sidecar",
        "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes",
        "CapabilityBoundingSet": "", "SystemCallFilter": "@system-service",
        "MemoryDenyWriteExecute": "yes", "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
    }.items():
        assert one(key) == value, key
    assert set(one("RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX",
                                                           "AF_NETLINK"}
    assert "User" not in directives(), "DynamicUser picks the user"


def test_unit_runs_the_installed_config() -> None:
    assert one("ExecStart") == f"{INSTALLED_BINARY} serve --config {INSTALLED_CONFIG}"
    assert one("ExecStartPre") == f"{INSTALLED_BINARY} check-config {INSTALLED_CONFIG}"


def test_credentials_match_the_config() -> None:
    loaded = dict(value.split(":", 1) for value in directives()["LoadCredential"])
    assert sorted(loaded) == sorted(SECRETS)
    for source in loaded.values():
        assert source.startswith("/etc/totp-sidecar/credentials/"), source
    config = yaml.safe_load(CONFIG.read_text())
    assert config["secrets"] == {f"{name}_file": f"{CREDENTIALS}/{name}" for name in SECRETS}
    path = config["storage"]["sqlite"]["path"]
    assert Path(path).parent == Path(STATE) == Path("/var/lib") / one("StateDirectory")
    assert one("WorkingDirectory") == STATE


@pytest.mark.skipif(shutil.which("systemd-analyze") is None and not CI,
                    reason="systemd-analyze not installed (Debian package systemd; "
                           "scripts/system-deps.sh installs it)")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (CI=true): scripts/system-deps.sh installs it"
    # verify checks that the commands exist: the installed path becomes this checkout's command.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, sidecar_binary()))
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr + done.stdout


def test_config_passes_check_config(tmp_path: Path) -> None:
    credentials, state = tmp_path / "credentials", tmp_path / "state"
    credentials.mkdir()
    state.mkdir()
    for name in SECRETS:
        (credentials / name).write_text(secrets.token_urlsafe(48) + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.read_text().replace(CREDENTIALS, str(credentials))
                      .replace(STATE, str(state)))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOTP_SIDECAR_")}
    done = subprocess.run([sidecar_binary(), "check-config", str(config)], capture_output=True,
                          text=True, timeout=60, env=environ)
    assert done.returncode == 0, done.stderr
    assert not done.stderr.strip(), done.stderr  # no warnings either
    assert done.stdout.strip().endswith("OK")


def test_config_without_credentials_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.read_text().replace(CREDENTIALS, str(tmp_path / "missing")))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOTP_SIDECAR_")}
    done = subprocess.run([sidecar_binary(), "check-config", str(config)], capture_output=True,
                          text=True, timeout=60, env=environ)
    assert done.returncode == 2
    for name in SECRETS:
        assert f"secrets.{name}_file" in done.stderr
