"""The who-am-I cache and app sessions: marks by logins, and an app found to keep its session
id across a login."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from sidecar.core.logins import Logins, session_tokens
from sidecar.primary import Credential, IntrospectResolver
from tests.conftest import make_config

pytestmark = pytest.mark.anyio


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver(tmp_path: Path, names: dict[str, str], ticks: Ticks) -> IntrospectResolver:
    """An app whose ``s`` session cookie names ``names[value]``; counts its calls."""
    config = make_config(tmp_path, primary={"resolver": "introspect", "session_cookies": ["s"],
                                            "introspect": {"url": "http://app.test/me",
                                                           "cache_seconds": 5}})

    def answer(request: httpx.Request) -> httpx.Response:
        session = request.headers.get("cookie", "").removeprefix("s=")
        return httpx.Response(200, json={"user": names.get(session)})

    return IntrospectResolver(config, transport=httpx.MockTransport(answer), monotonic=ticks,
                              logins=Logins(ticks))


def credential(value: str) -> Credential:
    return Credential(f"s={value}", "", session_tokens(f"s={value}", ""))


async def test_a_session_marked_lately_keeps_no_answer(tmp_path: Path) -> None:
    ticks = Ticks()
    names = {"T": "bob"}
    app = resolver(tmp_path, names, ticks)
    await app.resolve_credential(credential("T"))
    await app.resolve_credential(credential("T"))
    assert app.calls == 1
    app.logins.mark(session_tokens("s=T", ""))  # a login POST: its body may come much later
    ticks.now += 60
    for _ in range(2):
        assert (await app.resolve_credential(credential("T"))).identity.user == "bob"  # type: ignore[union-attr]
    assert app.calls == 3  # nothing kept while the mark is live
    await app.resolve_credential(credential("U"))
    await app.resolve_credential(credential("U"))
    assert app.calls == 4  # another session is cached as usual


async def test_an_app_that_keeps_its_session_id_across_a_login_is_no_longer_cached(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ticks = Ticks()
    names = {"T": "bob"}
    app = resolver(tmp_path, names, ticks)
    await app.resolve_credential(credential("T"))
    names["T"] = "alice"  # logged in without a new session id (a login the sidecar never saw)
    ticks.now += 6
    with caplog.at_level(logging.ERROR, "sidecar.primary"):
        switched = await app.resolve_credential(credential("T"))
    assert switched.identity is not None and switched.identity.user == "alice"
    assert app.keeps_session_ids and "keeps its session id across a login" in caplog.text
    calls = app.calls
    await app.resolve_credential(credential("T"))
    await app.resolve_credential(credential("U"))
    await app.resolve_credential(credential("U"))
    assert app.calls == calls + 3  # nothing cached from now on
