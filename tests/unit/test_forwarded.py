"""Original-request extraction, browser detection and the open-redirect check."""

from __future__ import annotations

import ipaddress

import pytest

from sidecar.errors import BadForwardedRequest
from sidecar.forwarded import (TrustedProxies, original_for_forward, original_for_nginx,
                               safe_redirect, wants_html)


def test_nginx_original_url() -> None:
    o = original_for_nginx({"x-original-url": "https://App.Test/a/b?x=1",
                            "x-original-method": "post"})
    assert (o.method, o.scheme, o.host, o.path, o.query) == ("POST", "https", "app.test", "/a/b", "x=1")


def test_nginx_parts_fallback() -> None:
    o = original_for_nginx({"x-forwarded-proto": "https", "x-forwarded-host": "app.test",
                            "x-original-uri": "/p?q=1"})
    assert o.url == "https://app.test/p?q=1"
    assert o.method == "GET"


@pytest.mark.parametrize("headers", [
    {},
    {"x-original-url": "/relative"},
    {"x-original-url": "javascript:alert(1)"},
    {"x-original-url": "https://user@app.test/"},
    {"x-original-url": "https://app.test/", "x-original-method": "GE T"},
    {"x-forwarded-host": "app.test", "x-original-uri": "no-slash"},
    {"x-forwarded-host": "app/test", "x-original-uri": "/"},
])
def test_nginx_bad_requests(headers: dict[str, str]) -> None:
    with pytest.raises(BadForwardedRequest):
        original_for_nginx(headers)


def test_forward_headers() -> None:
    o = original_for_forward({"x-forwarded-method": "GET", "x-forwarded-proto": "https",
                              "x-forwarded-host": "app.test", "x-forwarded-uri": "/x?y=2"})
    assert o.url == "https://app.test/x?y=2"


@pytest.mark.parametrize("missing", ["x-forwarded-method", "x-forwarded-host", "x-forwarded-uri"])
def test_forward_missing_header_is_bad(missing: str) -> None:
    headers = {"x-forwarded-method": "GET", "x-forwarded-host": "app.test", "x-forwarded-uri": "/"}
    del headers[missing]
    with pytest.raises(BadForwardedRequest):
        original_for_forward(headers)


def test_forward_disagreeing_original_url_is_bad() -> None:
    headers = {"x-forwarded-method": "GET", "x-forwarded-host": "app.test",
               "x-forwarded-uri": "/public", "x-original-url": "http://app.test/admin"}
    with pytest.raises(BadForwardedRequest):
        original_for_forward(headers)


@pytest.mark.parametrize(("accept", "browser"), [
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
    ("text/html", True),
    ("text/*", True),
    ("application/json", False),
    ("*/*", False),
    ("", False),
    ("text/html;q=0", False),
    ("text/html; q=0.0, application/json", False),
    ("application/json, text/html;q=0.1", True),
])
def test_wants_html(accept: str, browser: bool) -> None:
    assert wants_html(accept) is browser


def test_trusted_proxies() -> None:
    trusted = TrustedProxies((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")))
    assert trusted.trusted("10.1.2.3") and trusted.trusted("::1")
    assert not trusted.trusted("192.168.1.1") and not trusted.trusted("") and not trusted.trusted("x")


ALLOWED = (".example.com", "partner.test")


@pytest.mark.parametrize(("target", "expected"), [
    ("/dashboard?x=1", "/dashboard?x=1"),
    ("https://app.example.com/x", "https://app.example.com/x"),
    ("https://example.com/x", "https://example.com/x"),
    ("https://deep.sub.example.com/", "https://deep.sub.example.com/"),
    ("https://partner.test/cb", "https://partner.test/cb"),
    ("https://app.test/x", "https://app.test/x"),
    ("https://APP.TEST/x", "https://APP.TEST/x"),
    (None, "/"),
    ("", "/"),
    ("//evil.test/x", "/"),
    ("///evil.test/x", "/"),
    ("/\\evil.test", "/"),
    ("\\/evil.test", "/"),
    ("https:evil.test", "/"),
    ("https:/evil.test", "/"),
    ("https://evil.test", "/"),
    ("https://app.test@evil.test/", "/"),
    ("https://evil.test\\@app.test/", "/"),
    ("https://evilexample.com/", "/"),
    ("https://example.com.evil.test/", "/"),
    ("https://sub.partner.test/", "/"),
    ("javascript:alert(1)", "/"),
    ("JaVaScRiPt:alert(1)", "/"),
    ("data:text/html,<script>", "/"),
    ("ftp://app.test/", "/"),
    (" https://evil.test", "/"),
    ("/\t/evil.test", "/"),
    ("/%09/evil.test", "/%09/evil.test"),  # stays a local path on this host
    ("https://evil.test%2f@app.test/", "/"),
    ("http://app.test/x", "/"),  # no downgrade from https
    ("https://app.test:99999/", "/"),
    ("https://évil.test/", "/"),
    ("x" * 3000, "/"),
    ("\x00/x", "/"),
])
def test_safe_redirect(target: str | None, expected: str) -> None:
    assert safe_redirect(target, "https", "app.test", ALLOWED) == expected
