"""A real browser for the end-to-end tests: Debian's Chromium driven by Playwright for Python.

Nothing is downloaded: Playwright drives ``/usr/bin/chromium`` (``$CHROMIUM`` overrides it),
never a browser build of its own (no ``playwright install``). QR codes are read back from
screenshots with zbar (``pyzbar`` + Debian's ``libzbar0``); accessibility is checked with
axe-core from npm (``tests/browser/node_modules``, installed by ``scripts/system-deps.sh``).
When one of them is missing the tests that need it are skipped, or fail when ``CI=true``.

Screenshots go to ``test-artifacts/screenshots/`` (gitignored), axe reports to
``test-artifacts/axe/``.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, ViewportSize

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
AXE_JS = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts"
SHOTS = ARTIFACTS / "screenshots"
DESKTOP: ViewportSize = {"width": 1000, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
#: WCAG 2.x A and AA, as the accessibility test asks axe for them.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING = ("serious", "critical")


def unavailable(message: str) -> NoReturn:
    """Skip the test, or fail it when ``CI=true`` (CI must run the browser tests)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: the browser tests must run)", pytrace=False)
    pytest.skip(message)


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture() -> Iterator[Browser]:
    """``chromium``: Debian's Chromium, one per test module (import this to use it)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Browser, base_url: str, **options: Any) -> BrowserContext:
    options.setdefault("viewport", DESKTOP)
    options.setdefault("color_scheme", "light")
    options.setdefault("locale", "en-US")  # the pages' language follows Accept-Language
    context = browser.new_context(base_url=base_url, accept_downloads=True, **options)
    context.set_default_timeout(10_000)
    return context


# -- the demo app, as a person uses it ----------------------------------------------------
def sign_in(page: Page, user: str) -> None:
    """The demo app's own login form (the "primary" login)."""
    page.goto("/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(f"{user}-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def sign_out(page: Page) -> None:
    """The app's Sign out button (on its home page)."""
    if urlpath(page) != "/":
        page.goto("/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login$"))


def go_back(page: Page) -> None:
    """The browser's Back button, once the page has loaded.

    Debian's Chromium may swap a page's renderer on a cross-document navigation; for that
    instant, DevTools answers "Not attached to an active page" to the history call Playwright
    makes. That is the harness, not the page, so Back is tried again (at most three times).
    """
    from playwright.sync_api import Error

    for attempt in range(3):
        page.wait_for_load_state("load")
        try:
            page.go_back(wait_until="load")
            return
        except Error as error:
            if "Not attached to an active page" not in str(error) or attempt == 2:
                raise
            page.wait_for_timeout(200)


def urlpath(page: Page) -> str:
    from urllib.parse import urlsplit

    return urlsplit(page.url).path


def spaced(code: str) -> str:
    """A code as people copy it from their app: ``123 456``."""
    half = len(code) // 2
    return f"{code[:half]} {code[half:]}"


# -- QR codes from screenshots -------------------------------------------------------------
def png_gray(data: bytes) -> tuple[bytes, int, int]:
    """8-bit grey pixels of a PNG (non-interlaced, 8 bits per sample, as Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = depth = color = interlace = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    assert depth == 8 and interlace == 0 and channels, (depth, color, interlace)
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    previous = bytearray(stride)
    gray = bytearray()
    at = 0
    for _ in range(height):
        kind, line = raw[at], bytearray(raw[at + 1:at + 1 + stride])
        at += 1 + stride
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                corner = previous[i - channels] if i >= channels else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + pred) & 0xFF
        for x in range(0, stride, channels):
            if channels < 3:
                gray.append(line[x])
            else:
                gray.append((299 * line[x] + 587 * line[x + 1] + 114 * line[x + 2]) // 1000)
        previous = line
    return bytes(gray), width, height


def decode_qr(png: bytes) -> list[str]:
    """The texts of the QR codes zbar finds in a PNG screenshot."""
    try:
        from pyzbar import pyzbar  # type: ignore[import-untyped]
    except ImportError as exc:  # the package, or Debian's libzbar0 it loads
        unavailable(f"pyzbar/libzbar0 not usable ({exc}); pip install pyzbar, apt-get install libzbar0")
    pixels, width, height = png_gray(png)
    found = pyzbar.decode((pixels, width, height), symbols=[pyzbar.ZBarSymbol.QRCODE])
    return [item.data.decode("utf-8") for item in found]


# -- screenshots -------------------------------------------------------------------------------
def shot_name(name: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-")


def screenshot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{shot_name(name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def screenshots(page: Page, name: str) -> list[Path]:
    """``NAME-light``, ``NAME-dark`` and ``NAME-phone`` (light, 390 px wide) of the page as it is."""
    size = page.viewport_size or DESKTOP
    paths = [screenshot(page, f"{name}-light")]
    page.emulate_media(color_scheme="dark")
    paths.append(screenshot(page, f"{name}-dark"))
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(PHONE)
    paths.append(screenshot(page, f"{name}-phone"))
    page.set_viewport_size(size)
    return paths


# -- axe-core ------------------------------------------------------------------------------------
def axe_source() -> str:
    if not AXE_JS.is_file():
        unavailable(f"axe-core missing ({AXE_JS.relative_to(ROOT)}); run: npm ci --prefix tests/browser")
    return AXE_JS.read_text(encoding="utf-8")


def axe(page: Page, source: str) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.x A/AA violations on the page as it is now (every impact).

    The script is evaluated through the DevTools protocol, which the pages' CSP
    (``script-src 'self'``) does not govern, so the pages are checked with their real CSP.
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source)
    options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
    result = page.evaluate("async (options) => await window.axe.run(document, options)", options)
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def blocking(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v.get("impact") in BLOCKING]


def describe(violations: list[dict[str, Any]], where: str) -> str:
    """Violations as a readable list: rule, impact, help, then each element and why."""
    lines = [f"{len(violations)} axe violation(s) on {where}:"]
    for v in violations:
        lines.append(f"  [{v.get('impact')}] {v['id']}: {v['help']}  ({v.get('helpUrl', '')})")
        for node in v.get("nodes", []):
            target = " ".join(str(t) for t in node.get("target", []))
            lines.append(f"      element: {target}")
            lines.append(f"        html: {node.get('html', '')[:200]}")
            summary = " ".join(node.get("failureSummary", "").split())
            if summary:
                lines.append(f"        why:  {summary[:400]}")
    return "\n".join(lines)


def save_report(name: str, violations: list[dict[str, Any]]) -> None:
    folder = ARTIFACTS / "axe"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{shot_name(name)}.json").write_text(json.dumps(violations, indent=2))
