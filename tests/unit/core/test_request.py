"""The one door (sidecar.core.request): what a request says, read once, and when it is ambiguous."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.core.request import Door, Headers, Reading, read_cookies
from sidecar.errors import Ambiguous, BadForwardedRequest

OWN = ("totp_sidecar", "totp_sidecar_device")
WATCHED = frozenset({"demo_session", *OWN})


def door(session: tuple[str, ...] = ("demo_session",), header_mode: bool = False) -> Door:
    names = ("Remote-User", "Remote-Email", "Remote-Name", "Remote-Groups") if header_mode else None
    return Door(OWN, session, names, lambda peer: peer == "127.0.0.1")


def read(*headers: tuple[str, str | bytes], peer: str = "127.0.0.1", **kwargs: Any) -> Reading:
    raw = [(k.lower().encode(), v if isinstance(v, bytes) else v.encode("latin-1")) for k, v in headers]
    return door(**kwargs).read({"type": "http", "headers": raw, "client": (peer, 5000)})


@pytest.mark.parametrize("lines", [
    ["demo_session=a; demo_session=b"],
    ["demo_session=a", "demo_session=b"],
    ["demo_session =a"],
    ["demo_session\t=a"],
    ["Demo_Session=a; demo_session=b"],
    ["demo.session=a; demo_session=b"],
    ["demo session=a"],
    ['demo_session="a\\"b"'],
    ["demo_session=a\\b"],
    ["demo_session=a", "theme=dark"],  # joined with "," by WSGI servers: "a,theme=dark"
    ["demo_session=a; theme=dark demo_session=b"],  # SimpleCookie splits on the space
    ["demo_session\xa0=a"],
    ["demo_session=a\x1c"],
    ["totp_sidecar=x; totp_sidecar=y"],
])
def test_cookies_that_apps_could_read_differently_are_ambiguous(lines: list[str]) -> None:
    assert read_cookies(lines, WATCHED).problem


@pytest.mark.parametrize("lines", [
    ["demo_session=a; _ga=GA1.2.3; theme=dark"],
    ["demo_session=a; _ga=1", "theme=dark"],
    ["demo_session=a;;  ; other"],
    ["_ga=1; _ga=2; demo_session=a"],  # a repeated cookie nobody decides on
    ["odd name=1; demo_session=a"],
    ['demo_session="a"; _ga=1'],  # quoted (Python, Tornado, Jupyter write that): read as a
])
def test_ordinary_browsers_are_not_refused(lines: list[str]) -> None:
    reading = read_cookies(lines, WATCHED)
    assert reading.problem == ""
    assert reading.values["demo_session"] == "a"


def test_without_session_cookie_names_every_cookie_matters() -> None:
    assert read_cookies(["_ga=1; _ga=2"], None).problem
    assert read_cookies(["odd name=1"], None).problem
    assert read_cookies(["a=1; b=2"], None).problem == ""


def test_cookie_lines_are_joined_as_the_app_receives_them() -> None:
    reading = read(("cookie", "a=1"), ("cookie", "demo_session=s"))
    assert reading.problem == ""
    assert reading.cookies.header == "a=1; demo_session=s"
    assert reading.session_key == "demo_session=s"
    assert reading.kind == "session"
    assert reading.problem == ""


@pytest.mark.parametrize(("headers", "kind"), [
    ((("authorization", "Basic YTpi"),), "basic"),
    ((("authorization", "Bearer t"),), "bearer"),
    ((("authorization", "Token t"),), "session"),
    ((("cookie", "demo_session=s"), ("authorization", "Bearer t")), "session"),
    ((("cookie", "demo_session=s"), ("authorization", "Basic YTpi")), "session"),
    ((), "session"),
])
def test_an_api_request_is_one_without_a_session_cookie(headers: tuple[tuple[str, str], ...],
                                                        kind: str) -> None:
    assert read(*headers).kind == kind


def test_a_repeated_authorization_header_is_ambiguous() -> None:
    assert read(("authorization", "Basic YTpi"), ("authorization", "Bearer t")).problem


@pytest.mark.parametrize("headers", [
    (("remote-user", "alice"), ("remote-user", "bob")),
    (("remote-user", "alice"), ("remote_user", "bob")),
    (("remote-user", "admin, alice"),),
    (("remote-user", b"al\xffice"),),
    (("remote-groups", "a"), ("remote-groups", "b"), ("remote-user", "alice")),
])
def test_identity_headers_of_a_trusted_proxy_must_be_single_and_clean(
        headers: tuple[tuple[str, str | bytes], ...]) -> None:
    assert read(*headers, header_mode=True).problem


def test_identity_headers_are_read_only_from_trusted_peers() -> None:
    trusted = read(("remote-user", "alice"), header_mode=True)
    assert trusted.identity[0] == "alice" and trusted.problem == ""
    untrusted = read(("remote-user", "alice"), header_mode=True, peer="10.9.9.9")
    assert untrusted.identity == ("", "", "", "")


def test_client_address_is_the_last_hop_only_behind_a_trusted_proxy() -> None:
    assert read(("x-forwarded-for", "1.1.1.1, 2.2.2.2")).client == "2.2.2.2"
    assert read(("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "3.3.3.3")).client == "3.3.3.3"
    assert read(("x-forwarded-for", "1.1.1.1"), peer="10.0.0.5").client == "10.0.0.5"


@pytest.mark.parametrize("name", ["x-original-url", "x-forwarded-uri", "x-forwarded-host", "host",
                                  "x-original-method"])
def test_a_repeated_forwarded_header_is_a_bad_request(name: str) -> None:
    headers = Headers([(name.encode(), b"/a"), (name.encode(), b"/b")])
    with pytest.raises(BadForwardedRequest):
        headers.forwarded()


def test_a_header_under_two_wsgi_spellings_is_repeated() -> None:
    with pytest.raises(Ambiguous):
        Headers([(b"x-forwarded-host", b"a"), (b"x_forwarded_host", b"b")]).single("x-forwarded-host")
