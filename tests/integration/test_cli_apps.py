"""The command line with several apps: ``--app`` on ``users`` and ``doctor``, ``check-config``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.accounts import Accounts, Check
from sidecar.config import load_config
from sidecar.core import totp
from sidecar.core.apps import storage_key
from sidecar.wiring import make_storage
from tests.integration.test_cli import run, write_config
from tests.integration.test_cli_doctor import serving


@pytest.fixture(scope="module")
def whoami() -> Iterator[str]:
    with serving() as url:
        yield url


def apps(url: str = "http://127.0.0.1:9/api/me") -> list[dict[str, Any]]:
    return [{"name": "wiki", "hosts": ["wiki.example.com", "*.wiki.example.com"],
             "totp": {"issuer": "Wiki"},
             "primary": {"session_cookies": ["demo_session"], "login_url": "/signin",
                         "introspect": {"url": url, "cache_seconds": 0}}},
            {"name": "blog", "hosts": ["blog.example.com"], "users_namespace": "default"}]


def test_check_config_prints_each_app_with_its_hosts_and_implicit_rules(tmp_path: Path) -> None:
    path = write_config(tmp_path, apps=apps(), hosts=["app.example.com"],
                        primary={"session_cookies": ["demo_session"], "logout_url": "/bye",
                                 "introspect": {"url": "http://127.0.0.1:8000/api/me"}})
    result = run("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "app default: app.example.com (issuer Test App)",
        "  implicit rule: bypass /bye (from primary.logout_url; that path exactly; a deny rule "
        "still wins)",
        "app wiki: wiki.example.com, *.wiki.example.com (issuer Wiki)",
        "  implicit rule: bypass /signin (from apps[0].primary.login_url; that path exactly; a "
        "deny rule still wins)",
        "app blog: blog.example.com (issuer Test App, users of default)",
        "  implicit rule: bypass /bye (from apps[1].primary.logout_url; that path exactly; a deny "
        "rule still wins)",
        f"{path}: OK"]


def test_check_config_names_the_apps_bad_key(tmp_path: Path) -> None:
    bad = apps()
    bad[0]["primary"]["whoami_url"] = "http://x"
    bad[1]["hosts"] = ["WIKI.example.com"]
    result = run("check-config", str(write_config(tmp_path, apps=bad)))
    assert result.returncode == 2
    assert "apps[0].primary.whoami_url: unknown key (did you mean" in result.stderr
    assert ("apps[1].hosts: 'wiki.example.com' is claimed by both apps[0] (wiki) and apps[1] "
            "(blog)") in result.stderr



async def enroll_and_lock(path: Path, key: str) -> None:
    """``key`` (a storage key) enrolled, two recovery codes left, locked out."""
    config = load_config(path)
    storage = make_storage(config)
    await storage.open()
    try:
        service = Accounts(config, storage)
        secret = await service.pending_secret(key)
        result, codes, _ = await service.complete_enrollment(key, totp.code_at(secret, time.time()),
                                                            "192.0.2.1")
        assert result.check is Check.OK and len(codes) == 20
        for _ in range(config.throttle.max_failures):
            await service.check(key, "000000", "192.0.2.1")
    finally:
        await storage.close()


def test_users_take_the_app(tmp_path: Path) -> None:
    path = write_config(tmp_path, apps=apps())
    asyncio.run(enroll_and_lock(path, storage_key("wiki", "alice")))
    config = str(path)
    top = run("users", "--config", config, "list")
    assert top.returncode == 0 and top.stdout == ""  # the top-level app's users: nobody yet
    for args in (("users", "--app", "wiki", "--config", config, "list"),
                 ("users", "--config", config, "list", "--app", "wiki")):
        listed = run(*args)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith("alice: 2FA on"), listed.stdout
    assert run("users", "--config", config, "--app", "blog", "list").stdout == ""  # default's
    shown = run("users", "--config", config, "--app", "wiki", "show", "alice")
    assert shown.returncode == 0 and shown.stdout.startswith("alice: 2FA on")
    assert "\x1f" not in shown.stdout
    nobody = run("users", "--config", config, "show", "alice")
    assert nobody.returncode == 1 and "alice: no such user" in nobody.stderr
    assert run("users", "--config", config, "unlock", "alice").returncode == 1
    assert run("users", "--config", config, "--app", "wiki", "unlock", "alice").returncode == 0
    reset = run("users", "--config", config, "reset", "alice", "--app", "wiki")
    assert reset.returncode == 0 and "removed" in reset.stdout
    assert "2FA off" in run("users", "--config", config, "--app", "wiki", "show", "alice").stdout
    unknown = run("users", "--config", config, "--app", "shop", "list")
    assert unknown.returncode == 1
    assert "no app named 'shop' (the apps are: default, wiki, blog)" in unknown.stderr
    odd = run("users", "--config", config, "show", "wiki\x1falice")
    assert odd.returncode == 1 and "not a user id" in odd.stderr


def test_doctor_takes_the_app(tmp_path: Path, whoami: str) -> None:
    path = str(write_config(tmp_path, apps=apps(f"{whoami}/api/me")))
    top = run("doctor", "--config", path, "--cookie", "demo_session=good")
    assert top.returncode == 1  # the top-level app's who-am-I URL is not there
    wiki = run("doctor", "--config", path, "--app", "wiki", "--cookie", "demo_session=good")
    assert wiki.returncode == 0, wiki.stdout
    assert f"url: {whoami}/api/me" in wiki.stdout and "user: alice" in wiki.stdout
    unknown = run("doctor", "--config", path, "--app", "shop", "--cookie", "demo_session=good")
    assert unknown.returncode == 1 and "no app named 'shop'" in unknown.stderr
