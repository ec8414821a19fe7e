"""The forward-auth answers, per dialect, over in-memory parts: no database, no app, no server.

The parts come from ``wiring.build_parts`` with an in-memory storage, a resolver that reads
the user from the session cookie, and a fixed clock; ``ForwardAuth`` is called as ASGI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sidecar.core.request import Reading
from sidecar.primary import Credential, Identity, Resolved
from sidecar.storage import UserState
from sidecar.web.authz import Dialect, ForwardAuth
from sidecar.web.cookies import Cookies
from sidecar.wiring import Parts, build_parts
from tests.conftest import FakeClock, make_config
from tests.fakes import MemoryStorage

pytestmark = pytest.mark.anyio
RULES = [{"path": "/admin", "level": "deny"}, {"path": "/billing", "level": "required"}]


class CookieResolver:
    """The app says the user named by the ``s`` session cookie is logged in."""

    async def resolve(self, reading: Reading) -> Resolved:
        user = reading.cookie("s")
        return Resolved(Identity(user, f"{user}@example.com") if user else None)

    async def resolve_credential(self, cred: Credential) -> Resolved:
        return Resolved(None)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def parts(tmp_path: Path, clock: FakeClock) -> Parts:
    config = make_config(tmp_path, rules=RULES,
                         primary={"resolver": "introspect", "session_cookies": ["s"],
                                  "introspect": {"url": "http://app.test/me"}})
    storage = MemoryStorage()
    storage.users["erin"] = UserState("erin", secret="sealed", enabled_at=1, generation=1)
    return build_parts(config, storage=storage, resolver=CookieResolver(), clock=clock)


async def ask(parts: Parts, dialect: Dialect, path: str = "/", cookie: str = "",
              accept: str = "text/html", peer: str = "127.0.0.1") -> tuple[int, dict[str, str], Any]:
    headers = [(b"accept", accept.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    if dialect is Dialect.NGINX:
        headers += [(b"x-original-url", f"https://app.test{path}".encode()),
                    (b"x-original-method", b"GET")]
    else:
        headers += [(b"x-forwarded-method", b"GET"), (b"x-forwarded-proto", b"https"),
                    (b"x-forwarded-host", b"app.test"), (b"x-forwarded-uri", path.encode())]
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "path": f"/auth/{dialect.value}", "headers": headers,
             "client": (peer, 50000)}
    await ForwardAuth(parts, Cookies(parts.config))(scope, send, dialect)
    start, body = sent
    found = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], found, json.loads(body["body"]) if body["body"] else None


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_anonymous_passes(parts: Parts, dialect: Dialect) -> None:
    status, headers, _ = await ask(parts, dialect)
    assert status == 200 and "remote-user" not in headers


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_a_user_without_2fa_passes_with_who_they_are(parts: Parts, dialect: Dialect) -> None:
    status, headers, _ = await ask(parts, dialect, cookie="s=alice")
    assert status == 200
    assert (headers["remote-user"], headers["remote-email"]) == ("alice", "alice@example.com")


@pytest.mark.parametrize(("dialect", "status"), [(Dialect.NGINX, 401), (Dialect.FORWARD, 302)])
async def test_an_enrolled_browser_without_a_pass_goes_to_the_challenge(
        parts: Parts, dialect: Dialect, status: int) -> None:
    found, headers, _ = await ask(parts, dialect, "/reports?x=1", cookie="s=erin")
    assert found == status
    assert headers["location"] == ("https://app.test/_2fa/challenge?rd="
                                   "https%3A%2F%2Fapp.test%2Freports%3Fx%3D1")


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_an_api_client_gets_json(parts: Parts, dialect: Dialect) -> None:
    status, headers, body = await ask(parts, dialect, cookie="s=erin", accept="*/*")
    assert status == 401 and "location" not in headers
    assert body["error"] == "2fa_required" and headers["x-totp-error"] == "2fa_required"


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_a_valid_pass_lets_the_user_through(parts: Parts, dialect: Dialect) -> None:
    value = parts.passes.issue("erin", "s=erin", 1)
    status, headers, _ = await ask(parts, dialect, cookie=f"s=erin; totp_sidecar={value}")
    assert status == 200 and headers["remote-user"] == "erin"
    other = await ask(parts, dialect, cookie=f"s=mallory; totp_sidecar={value}")
    assert other[0] == 200 and other[1]["remote-user"] == "mallory"  # not enrolled: no 2FA asked


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_required_means_enroll(parts: Parts, dialect: Dialect) -> None:
    _, headers, _ = await ask(parts, dialect, "/billing", cookie="s=alice")
    assert headers["location"].startswith("https://app.test/_2fa/enroll?rd=")


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_deny_and_untrusted_peers(parts: Parts, dialect: Dialect) -> None:
    assert (await ask(parts, dialect, "/admin"))[0] == 403
    status, _, body = await ask(parts, dialect, peer="203.0.113.9")
    assert status == 403 and body["error"] == "untrusted_peer"


async def test_a_repeated_session_cookie_is_ambiguous(parts: Parts) -> None:
    status, _, body = await ask(parts, Dialect.NGINX, cookie="s=erin; s=alice")
    assert status == 401 and body["error"] == "ambiguous_request"
