"""The command line's operator conveniences (issue 12, item 14), run as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from sidecar import __version__
from sidecar.config import load_config
from tests.integration.test_cli import enroll_and_lock, run, write_config
from tests.ports import free_port

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"totp-sidecar {__version__}"


def test_keys_generate_yaml_is_a_valid_secrets_section(tmp_path: Path) -> None:
    result = run("keys", "generate")
    assert result.returncode == 0, result.stderr
    generated = yaml.safe_load(result.stdout)["secrets"]
    assert set(generated) == {"signing_keys", "hash_key", "encryption_keys"}
    path = write_config(tmp_path, secrets=generated)
    assert run("check-config", str(path)).returncode == 0
    assert yaml.safe_load(run("keys", "generate").stdout)["secrets"] != generated


def test_keys_generate_files_with_mode_0600(tmp_path: Path) -> None:
    result = run("keys", "generate", "--dir", str(tmp_path / "keys"))
    assert result.returncode == 0, result.stderr
    generated = yaml.safe_load(result.stdout)["secrets"]
    assert set(generated) == {"signing_keys_file", "hash_key_file", "encryption_keys_file"}
    for file in generated.values():
        assert stat.S_IMODE(Path(file).stat().st_mode) == 0o600
    assert run("check-config", str(write_config(tmp_path, secrets=generated))).returncode == 0
    again = run("keys", "generate", "--dir", str(tmp_path / "keys"))
    assert again.returncode == 1 and "exists" in again.stderr  # never overwritten


def test_config_before_or_after_the_command_or_from_the_environment(tmp_path: Path) -> None:
    path = str(write_config(tmp_path))
    args: tuple[str, ...]
    for args in (("--config", path, "users", "list"), ("users", "--config", path, "list"),
                 ("users", "list", "--config", path), ("check-config", "--config", path),
                 ("--config", path, "check-config")):
        result = run(*args)
        assert result.returncode == 0, (args, result.stderr)
    env = {**os.environ, "TOTP_SIDECAR_CONFIG": path}
    for args in (("users", "list"), ("check-config",)):
        result = subprocess.run([sys.executable, "-m", "sidecar", *args], capture_output=True,
                                text=True, timeout=60, env=env)
        assert result.returncode == 0, (args, result.stderr)
    # the same default everywhere: config.yaml in the working folder
    for args in (("users", "list"), ("check-config",), ("serve",), ("keys", "rotate")):
        result = subprocess.run([sys.executable, "-m", "sidecar", *args], capture_output=True,
                                text=True, timeout=60, cwd=tmp_path / "..",
                                env={k: v for k, v in os.environ.items()
                                     if k != "TOTP_SIDECAR_CONFIG"})
        assert result.returncode == 2 and "config.yaml" in result.stderr, (args, result.stderr)


def test_users_show_nobody_list_json_and_iso_dates(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    empty = run("users", "--config", str(path), "list")
    assert empty.returncode == 0 and empty.stdout == ""
    assert "no users have set up two-factor authentication yet" in empty.stderr
    assert run("users", "--config", str(path), "list", "--json").stdout.strip() == "[]"
    asyncio.run(enroll_and_lock(path))
    nobody = run("users", "--config", str(path), "show", "nobody")
    assert nobody.returncode == 1 and "no such user" in nobody.stderr
    listed = run("users", "--config", str(path), "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (alice,) = json.loads(listed.stdout)
    assert alice["user"] == "alice" and alice["enrolled"] is True
    assert alice["recovery_codes_left"] == 2
    assert ISO.fullmatch(alice["enabled_at"]) and ISO.fullmatch(alice["locked_until"])
    shown = run("users", "--config", str(path), "show", "alice").stdout
    assert f"locked until {alice['locked_until']}" in shown
    assert all(ISO.match(line.split()[0]) for line in shown.splitlines()[1:])


def test_check_config_suggests_the_nearest_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, cookie={"max_agee": "1h"}, storag={})
    result = run("check-config", str(path))
    assert result.returncode == 2
    assert "cookie.max_agee: unknown key (did you mean 'max_age'?" in result.stderr
    assert "storag: unknown key (did you mean 'storage'?" in result.stderr


def test_a_busy_port_is_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and "sidecar ready" not in result.stderr


def start_demo(port: int, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    demo = subprocess.Popen([sys.executable, "-m", "sidecar", "demo", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert demo.stdout is not None
    deadline = time.monotonic() + 30
    for line in demo.stdout:
        if line.strip().startswith("Database:"):
            return demo, line.split(":", 1)[1].strip()
        assert time.monotonic() < deadline
    demo.kill()
    raise AssertionError(demo.communicate()[1])


def test_demo_ignores_sidecar_variables_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    secrets = load_config(write_config(tmp_path))
    env = {**os.environ, "TOTP_SIDECAR_HASH_KEY": secrets.hash_key,
           "TOTP_SIDECAR_SIGNING_KEYS": ",".join(secrets.signing_keys),
           "TOTP_SIDECAR_ENCRYPTION_KEYS": ",".join(secrets.encryption_keys)}
    demo, database = start_demo(free_port(), env)
    try:
        assert Path(database).parent.is_dir()
        demo.send_signal(signal.SIGTERM)
        _, errors = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert "Traceback" not in errors, errors
    assert not Path(database).parent.exists()


def test_serve_logs_json_only_with_a_start_line_and_serves_metrics(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "sidecar", "serve", "--config", str(path),
                              "--host", "127.0.0.1", "--port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and serve.poll() is None
                time.sleep(0.1)
        serve.send_signal(signal.SIGTERM)
        _, errors = serve.communicate(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
    for name in ("totp_sidecar_build_info{", "totp_sidecar_enrolled_users 0.0",
                 "totp_sidecar_whoami_seconds_bucket", "totp_sidecar_storage_errors_total",
                 'totp_sidecar_whoami_errors_total{app="default",kind="not_json"}'):
        assert name in metrics
    lines = [json.loads(line) for line in errors.splitlines()]  # every line is JSON
    (start,) = [line for line in lines if line.get("event") == "starting"]
    assert start["version"] == __version__ and start["listen"] == f"127.0.0.1:{port}"
    assert start["storage"] == f"sqlite:{tmp_path / 'sidecar.db'}"
    assert start["resolver"] == "introspect"
    messages = [line["message"] for line in lines]
    assert messages.index("starting") < messages.index("sidecar ready")
    assert any(line["logger"].startswith("uvicorn") for line in lines), errors
    secrets = load_config(path)
    assert secrets.hash_key not in errors and secrets.signing_keys[0] not in errors
