"""Shared fixtures: a fixed clock, configs, and the sidecar + demo app wired in-process.

The integration fixtures use the real ASGI apps (sidecar and demo app) and a real SQLite
file; only the clock is fake, so that time steps can be crossed without sleeping.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any, cast

import httpx
import pyotp
import pytest
from starlette.applications import Starlette

from sidecar.config import Config, SQLiteConfig, parse_config
from sidecar.core.clock import FixedClock
from sidecar.demo.app import create_demo_app
from sidecar.primary import IntrospectResolver
from sidecar.web.app import SidecarApp, create_app

SIGNING_KEY = "k" * 40
HASH_KEY = "h" * 40
ENCRYPTION_KEY = "e" * 40
START = 1_800_000_000.0  # a fixed moment, at the start of a 30 s step


class FakeClock(FixedClock):
    """The tests' clock: it starts at ``START`` and moves only when told."""

    def __init__(self, now: float = START) -> None:
        super().__init__(now)


def config_dict(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "totp": {"issuer": "Test App"},
        "primary": {"resolver": "introspect", "session_cookies": ["demo_session"],
                    "introspect": {"url": "http://app.test/api/me", "cache_seconds": 5}},
        "secrets": {"signing_keys": [SIGNING_KEY], "hash_key": HASH_KEY,
                    "encryption_keys": [ENCRYPTION_KEY]},
        "storage": {"sqlite": {"path": str(tmp_path / "sidecar.db")}},
    }
    for key, value in overrides.items():
        data[key] = value
    return data


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    return parse_config(config_dict(tmp_path, **overrides), environ={})


def sqlite_path(config: Config) -> str:
    """The SQLite file of a config that names one."""
    assert isinstance(config.storage, SQLiteConfig), config.storage
    return config.storage.path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Browser:
    """One user agent: its own cookies (app session + 2FA cookie), talking to the sidecar."""

    env: Env
    cookies: dict[str, str] = field(default_factory=dict)
    host: str = "app.test"

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def keep(self, response: httpx.Response) -> httpx.Response:
        for value in response.headers.get_list("set-cookie"):
            name, _, rest = value.partition("=")
            cookie_value = rest.split(";", 1)[0]
            if "Max-Age=0" in value or not cookie_value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = cookie_value
        return response

    async def login(self, user: str = "alice") -> None:
        response = await self.env.app_client.post(
            "/login", data={"username": user, "password": f"{user}-password"})
        assert response.status_code == 303, response.text
        self.keep(response)
        assert "demo_session" in self.cookies

    async def logout(self) -> None:
        await self.env.app_client.post("/logout", headers={"cookie": self.cookie_header()})
        self.cookies.pop("demo_session", None)

    async def get(self, path: str, **headers: str) -> httpx.Response:
        send = {"accept": "text/html", "cookie": self.cookie_header(), "host": self.host} | headers
        return self.keep(await self.env.client.get(path, headers=send))

    async def post(self, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
        send = {"accept": "text/html", "cookie": self.cookie_header(), "host": self.host} | headers
        return self.keep(await self.env.client.post(path, data=data, headers=send))

    async def auth(self, path: str = "/", accept: str = "text/html", method: str = "GET",
                   **headers: str) -> httpx.Response:
        """What nginx's auth_request subrequest would ask for a request to ``path``."""
        send = {"accept": accept, "cookie": self.cookie_header(),
                "x-original-url": f"http://{self.host}{path}", "x-original-method": method}
        return await self.env.client.get("/auth/nginx", headers=send | headers)

    async def form_token(self, path: str) -> tuple[str, str]:
        page = await self.get(path)
        assert page.status_code == 200, page.text
        match = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert match, page.text
        return match.group(1), page.text

    async def enroll(self) -> tuple[str, list[str]]:
        """Turn 2FA on; the secret and the recovery codes."""
        csrf, page = await self.form_token("/_2fa/enroll")
        key = re.search(r'id="secret-key">([A-Z2-7 ]+)<', page)
        assert key, page
        secret = key.group(1).replace(" ", "")
        code = pyotp.TOTP(secret).at(int(self.env.clock()))
        made = await self.post("/_2fa/enroll", {"csrf": csrf, "code": code})
        assert made.status_code == 303, made.text  # POST, then GET: Back never resubmits
        assert made.headers["location"] == "/_2fa/recovery-codes"
        done = await self.get("/_2fa/recovery-codes")
        assert done.status_code == 200, done.text
        codes = re.findall(r"<code>([a-z2-9]{5}-[a-z2-9]{5})</code>", done.text)
        assert len(codes) == 20
        return secret, codes

    async def challenge(self, code: str, rd: str = "/") -> httpx.Response:
        csrf, _ = await self.form_token(f"/_2fa/challenge?rd={rd}")
        return await self.post("/_2fa/challenge", {"csrf": csrf, "code": code, "rd": rd})

    async def sign_in_and_remember(self, user: str, secret: str) -> None:
        """Sign out of the app and in again as ``user``, then pass the next code with
        "remember this device" ticked."""
        await self.logout()
        await self.login(user)
        csrf, _ = await self.form_token("/_2fa/challenge?rd=/")
        self.env.clock.advance(30)
        await self.post("/_2fa/challenge", {"csrf": csrf, "code": self.env.code(secret), "rd": "/",
                                            "remember": "1"})


@dataclass
class Env:
    sidecar: SidecarApp
    client: httpx.AsyncClient
    app_client: httpx.AsyncClient
    clock: FakeClock
    config: Config
    demo: Any = None  # the demo app's handlers (sessions, reset requests)

    def browser(self) -> Browser:
        return Browser(self)

    async def victim_and_attacker(self) -> tuple[Browser, Browser]:
        """alice and bob, each logged in with 2FA on and passed in their own browser."""
        browsers = []
        for user in ("alice", "bob"):
            browser = self.browser()
            await browser.login(user)
            await browser.enroll()
            browsers.append(browser)
        return browsers[0], browsers[1]

    def code(self, secret: str, offset_steps: int = 0) -> str:
        return pyotp.TOTP(secret).at(int(self.clock()) + 30 * offset_steps)


async def start_env(config: Config, clock: FakeClock) -> AsyncGenerator[Env, None]:
    demo = create_demo_app()
    # Each Browser keeps its own cookies: the shared client must store none.
    app_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=demo),
                                   base_url="http://app.test",
                                   cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
    resolver = IntrospectResolver(config, client=httpx.AsyncClient(
        transport=httpx.ASGITransport(app=demo), base_url="http://app.test"))
    reset_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=demo),
                                     cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
    app = create_app(config, reset_client=reset_client, resolver=resolver, clock=clock)
    await app.parts.storage.open()
    await app.parts.accounts.states.poll()
    app.parts.accounts.states.start()  # the change feed, read in the background
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test",
                               cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))
    try:
        yield Env(app, client, app_client, clock, config, demo.state.demo)
    finally:
        await client.aclose()
        await app_client.aclose()
        await app.parts.accounts.states.stop()
        await app.parts.notifier.aclose()
        await resolver.aclose()
        await reset_client.aclose()
        await app.parts.storage.close()


@contextlib.asynccontextmanager
async def running_env(config: Config, clock: FakeClock) -> AsyncIterator[Env]:
    """``start_env`` for a config of a test's own, closed even when the test fails."""
    gen = start_env(config, clock)
    try:
        yield await gen.__anext__()
    finally:
        await gen.aclose()


@contextlib.asynccontextmanager
async def sidecar_alone(config: Config, clock: FakeClock, whoami: Starlette | None = None
                        ) -> AsyncIterator[tuple[SidecarApp, httpx.AsyncClient]]:
    """The sidecar without the demo app, its who-am-I URL answered by ``whoami`` when given.

    App errors come back as a 500 (not raised), so that a crash is told from a 400.
    """
    replaced: dict[str, Any] = {"clock": clock}
    if whoami is not None:
        replaced["resolver"] = IntrospectResolver(config, client=httpx.AsyncClient(
            transport=httpx.ASGITransport(app=whoami), base_url="http://app.test"))
    app = create_app(config, **replaced)
    await app.parts.open()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, app),
                                                             raise_app_exceptions=False),
                               base_url="http://app.test")
    try:
        yield app, client
    finally:
        await client.aclose()
        await app.parts.aclose()  # the notices, the resolver's client, the database


@pytest.fixture
async def env(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Env]:
    async for item in start_env(make_config(tmp_path), clock):
        yield item


def new_key() -> str:
    return secrets.token_urlsafe(40)
