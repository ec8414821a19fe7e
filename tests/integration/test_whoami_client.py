"""The who-am-I call a running sidecar makes (aiohttp, ``sidecar.fetch``), against a real
socket: the bytes the app would receive go out unchanged, a redirect is not followed, no
cookie is kept between calls, bytes that cannot go out unchanged are refused, and an
unreachable URL is an error, never "nobody is logged in"."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.errors import Ambiguous, UpstreamUnavailable
from sidecar.primary import Credential, IntrospectResolver
from tests.conftest import make_config
from tests.ports import free_port

pytestmark = pytest.mark.anyio


class App:
    """A raw HTTP/1.1 server: records each request's bytes, answers what ``reply`` says."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.status_body: tuple[bytes, bytes] = (b"200 OK", b'{"user": "alice"}')
        self.extra = b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                status, body = self.status_body
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                             + self.extra + b"Content-Length: " + str(len(body)).encode()
                             + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def app() -> AsyncIterator[tuple[App, int]]:
    app, port = App(), free_port()
    server = await asyncio.start_server(app.handle, "127.0.0.1", port)
    try:
        yield app, port
    finally:
        server.close()


def resolver(tmp_path: Path, port: int) -> IntrospectResolver:
    config = make_config(tmp_path, primary={"resolver": "introspect", "introspect": {
        "url": f"http://127.0.0.1:{port}/api/me", "cache_seconds": 0}})
    return IntrospectResolver(config)


def header(request: bytes, name: bytes) -> list[bytes]:
    lines = request.split(b"\r\n")[1:]
    return [line.split(b":", 1)[1].strip() for line in lines
            if line.split(b":", 1)[0].strip().lower() == name]


async def test_the_credential_goes_out_byte_for_byte(tmp_path: Path, app: tuple[App, int]) -> None:
    server, port = app
    ask = resolver(tmp_path, port)
    try:
        cookie = "sid=abc; name=Zo\u00c3\u00ab; a=1"  # the door's latin-1 reading of UTF-8 "Zoë"
        resolved = await ask.resolve_credential(Credential(cookie, "Basic YTpi"))
        assert resolved.identity is not None and resolved.identity.user == "alice"
        (request,) = server.requests
        assert request.startswith(b"GET /api/me HTTP/1.1\r\n")
        assert header(request, b"cookie") == [b"sid=abc; name=Zo\xc3\xab; a=1"]
        assert header(request, b"authorization") == [b"Basic YTpi"]
        assert header(request, b"accept") == [b"application/json"]
    finally:
        await ask.aclose()


async def test_bytes_that_cannot_go_out_unchanged_are_refused(
        tmp_path: Path, app: tuple[App, int]) -> None:
    server, port = app
    ask = resolver(tmp_path, port)
    try:
        with pytest.raises(Ambiguous, match="not UTF-8"):
            await ask.resolve_credential(Credential("sid=\u00e9", ""))  # a lone latin-1 byte
        assert server.requests == []
    finally:
        await ask.aclose()


async def test_no_redirect_is_followed_and_no_cookie_is_kept(
        tmp_path: Path, app: tuple[App, int]) -> None:
    server, port = app
    server.status_body = (b"302 Found", b"")
    server.extra = b"Location: /login\r\nSet-Cookie: sid=attacker; Path=/\r\n"
    ask = resolver(tmp_path, port)
    try:
        with pytest.raises(UpstreamUnavailable, match="answered 302"):
            await ask.resolve_credential(Credential("sid=victim", ""))
        server.status_body, server.extra = (b"200 OK", b'{"user": null}'), b""
        assert (await ask.resolve_credential(Credential("", "Bearer t"))).identity is None
        assert len(server.requests) == 2  # /login was never asked
        assert header(server.requests[1], b"cookie") == []  # nothing kept from the 302
    finally:
        await ask.aclose()


async def test_unreachable_and_not_json_are_errors(tmp_path: Path, app: tuple[App, int]) -> None:
    server, port = app
    ask = resolver(tmp_path, free_port())
    try:
        with pytest.raises(UpstreamUnavailable, match="cannot be reached"):
            await ask.resolve_credential(Credential("sid=1", ""))
    finally:
        await ask.aclose()
    server.status_body = (b"200 OK", b"<html>login</html>")
    ask = resolver(tmp_path, port)
    try:
        with pytest.raises(UpstreamUnavailable, match="did not answer JSON"):
            await ask.resolve_credential(Credential("sid=1", ""))
    finally:
        await ask.aclose()


@pytest.mark.parametrize("cred", [Credential("sid=a\x01b", ""), Credential("", "Bearer a\x7fb"),
                                  Credential("sid=a\x00b", "")])
async def test_a_control_character_is_refused_not_a_crash(
        tmp_path: Path, app: tuple[App, int], cred: Credential) -> None:
    """aiohttp raises a bare ValueError on control bytes in a header: that escaped as a 500."""
    server, port = app
    ask = resolver(tmp_path, port)
    try:
        with pytest.raises(Ambiguous, match="control"):
            await ask.resolve_credential(cred)
        assert server.requests == []
    finally:
        await ask.aclose()


async def test_credentials_in_the_url_never_stand_in_for_the_request_s(
        tmp_path: Path, app: tuple[App, int]) -> None:
    """aiohttp turns user information in the URL into its own Authorization: a cookie-only
    request would reach the app as the URL's account; with the request's own, a ValueError."""
    server, port = app
    config = make_config(tmp_path, primary={"resolver": "introspect", "introspect": {
        "url": f"http://127.0.0.1:{port}/api/me", "cache_seconds": 0}})
    introspect = dataclasses.replace(config.primary.introspect,
                                     url=f"http://svc:secret@127.0.0.1:{port}/api/me")
    # the configuration refuses such a URL too (test_sections): this is the second line
    config = dataclasses.replace(config, primary=dataclasses.replace(config.primary,
                                                                     introspect=introspect))
    ask = IntrospectResolver(config)
    try:
        for cred in (Credential("sid=junk", ""), Credential("sid=junk", "Basic YTpi")):
            with pytest.raises(UpstreamUnavailable):
                await ask.resolve_credential(cred)
        assert server.requests == []
    finally:
        await ask.aclose()
