"""`totp-sidecar demo` as a new user runs it: one process, the whole flow on one port."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.e2e.stacks import ROOT
from tests.e2e.steps import BROWSER, assert_allowed, assert_challenged, challenge_form, enroll, login, logout
from tests.ports import free_port


@dataclass
class Demo:
    base: str
    host: str
    output: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    port = free_port()
    output = tmp_path_factory.mktemp("demo") / "demo.out"
    with output.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sidecar", "demo", "--port", str(port)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while "is running" not in output.read_text():
            assert proc.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.05)
        yield Demo(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", output)
    finally:
        proc.terminate()
        proc.wait(10)


def test_demo_prints_url_and_users(demo: Demo) -> None:
    text = demo.output.read_text()
    assert f"{demo.base}/" in text
    for user in ("alice", "bob", "carol"):
        assert f"{user}-password" in text


def test_demo_whole_flow(demo: Demo) -> None:
    with httpx.Client(base_url=demo.base, headers=BROWSER, follow_redirects=False,
                      timeout=10) as browser:
        login(browser, "bob")
        assert_allowed(browser, "bob")
        key, _, codes = enroll(browser)
        assert_allowed(browser, "bob")
        logout(browser)
        login(browser, "bob")
        url = assert_challenged(demo, browser)
        csrf, rd = challenge_form(browser, url)
        code = pyotp.TOTP(key).at(time.time() + 30)
        passed = browser.post("/_2fa/challenge", data={"csrf": csrf, "rd": rd, "code": code})
        assert passed.status_code == 303 and passed.headers["location"] == f"{demo.base}/"
        assert_allowed(browser, "bob")


def test_demo_carol_must_enroll(demo: Demo) -> None:
    with httpx.Client(base_url=demo.base, headers=BROWSER, follow_redirects=False,
                      timeout=10) as browser:
        login(browser, "carol")
        response = browser.get("/reports")
        assert response.status_code == 302
        assert response.headers["location"].startswith(f"{demo.base}/_2fa/enroll?rd=")
