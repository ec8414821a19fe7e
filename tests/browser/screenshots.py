"""README's pictures: docs/screenshots/enroll.png, recovery-codes.png, challenge.png and
challenge-key.png.

    .venv/bin/python tests/browser/screenshots.py [OUT_DIR]     # default: docs/screenshots

Runs ``totp-sidecar demo`` (demo app + sidecar + development proxy, as ``make demo`` does) on a
free port with a temporary database, and Debian's Chromium (``/usr/bin/chromium`` or
``$CHROMIUM``; never a downloaded browser) signs in as alice, opens set-up, turns 2FA on and
signs in again; then it adds a security key (a virtual authenticator of Chromium's DevTools
protocol) and signs in once more for the key prompt. The browser opens the demo at
``localhost`` (WebAuthn wants a host name, not an IP address). Light scheme, 1000 px wide,
full page. Each file must stay under 300 KB.
tests/e2e/test_browser.py runs this into a temporary folder, so it keeps working.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import pyotp  # noqa: E402

from tests.e2e.browser import DESKTOP, launch, new_context, sign_in, sign_out, spaced  # noqa: E402
from tests.ports import free_port  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser

MAX_BYTES = 300 * 1024
NAMES = ("enroll.png", "recovery-codes.png", "challenge.png", "challenge-key.png")


def start_demo(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with (tmp / "demo.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sidecar", "demo", "--port", str(port),
                                 "--db", str(tmp / "demo.db")], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"demo exited: {(tmp / 'demo.log').read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, f"http://localhost:{port}"  # a host name: WebAuthn's RP ID
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"demo not ready: {(tmp / 'demo.log').read_text()}")
        time.sleep(0.05)


def shoot(browser: Browser, base: str, out: Path) -> list[Path]:
    context = new_context(browser, base, viewport=DESKTOP, color_scheme="light")
    page = context.new_page()
    paths = [out / name for name in NAMES]
    try:
        sign_in(page, "alice")
        page.goto("/_2fa/enroll")
        page.locator("details.manual summary").click()
        secret = page.locator("#secret-key").inner_text().replace(" ", "")
        page.locator("details.manual summary").click()  # shown closed, as people first see it
        page.screenshot(path=str(paths[0]), full_page=True)
        page.get_by_label("Authentication code").fill(spaced(pyotp.TOTP(secret).now()))
        page.get_by_role("button", name="Verify").click()
        page.locator("#recovery-codes").wait_for()
        page.screenshot(path=str(paths[1]), full_page=True)
        page.get_by_label("I have saved these codes").check()
        page.get_by_role("button", name="Complete").click()
        sign_out(page)
        sign_in(page, "alice")
        page.get_by_label("Authentication code").wait_for()
        page.screenshot(path=str(paths[2]), full_page=True)
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True}})
        page.get_by_label("Authentication code").fill(spaced(pyotp.TOTP(secret).at(time.time() + 30)))
        page.get_by_role("button", name="Verify").click()
        page.goto("/_2fa/settings")
        page.get_by_label("Name of the new key").fill("YubiKey 5")
        page.get_by_role("button", name="Add a security key").click()
        page.wait_for_url("**/_2fa/settings?notice=key_added")
        sign_out(page)
        sign_in(page, "alice")
        page.get_by_role("button", name="Use your security key").wait_for()
        page.screenshot(path=str(paths[3]), full_page=True)
    finally:
        context.close()
    return paths


def make(out: Path, browser: Browser | None = None) -> list[Path]:
    """Write the four PNGs into ``out``; with ``browser`` None, launch Chromium for it."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_demo(Path(tmp))
        try:
            if browser is not None:
                paths = shoot(browser, base, out)
            else:
                from playwright.sync_api import sync_playwright

                with sync_playwright() as playwright:
                    own = launch(playwright)
                    try:
                        paths = shoot(own, base, out)
                    finally:
                        own.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    too_big = [f"{p.name}: {p.stat().st_size} bytes" for p in paths if p.stat().st_size >= MAX_BYTES]
    if too_big:
        raise SystemExit(f"screenshots over {MAX_BYTES} bytes: {', '.join(too_big)}")
    return paths


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "screenshots"
    for path in make(out):
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
