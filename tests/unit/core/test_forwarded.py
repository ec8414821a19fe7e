"""Original-request extraction, browser detection and the open-redirect check."""

from __future__ import annotations

import ipaddress

import pytest

from sidecar.core.forwarded import (
    TrustedProxies,
    original_for_forward,
    original_for_nginx,
    page_origin,
    parse_host,
    redirect_entry,
    safe_redirect,
    wants_html,
)
from sidecar.errors import BadForwardedRequest


def test_nginx_original_url() -> None:
    o = original_for_nginx({"x-original-url": "https://App.Test/a/b?x=1",
                            "x-original-method": "post"})
    assert (o.method, o.scheme, o.host, o.path, o.query) == ("POST", "https", "app.test", "/a/b", "x=1")


def test_nginx_parts_fallback() -> None:
    o = original_for_nginx({"x-forwarded-proto": "https", "x-forwarded-host": "app.test",
                            "x-original-uri": "/p?q=1", "x-original-method": "get"})
    assert o.url == "https://app.test/p?q=1"
    assert o.method == "GET"


def test_nginx_without_the_method_is_refused() -> None:
    """A POST read as a GET would skip rules for POSTs and the login's marks: no guess."""
    with pytest.raises(BadForwardedRequest, match="X-Original-Method"):
        original_for_nginx({"x-original-url": "https://app.test/login"})
    assert original_for_nginx({"x-original-url": "https://app.test/login",
                               "x-forwarded-method": "POST"}).method == "POST"


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


ALLOWED = (".example.com", "partner.test", "https://x.corp.test:8443", "http://legacy.test")


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
    # ports and schemes: a host entry is https on the default port only
    ("https://x.corp.test:8443/", "https://x.corp.test:8443/"),  # an origin entry: exactly it
    ("https://x.corp.test/", "/"),
    ("http://x.corp.test:8443/", "/"),
    ("https://x.corp.test:8444/", "/"),
    ("http://legacy.test/", "http://legacy.test/"),
    ("http://legacy.test:80/", "http://legacy.test:80/"),
    ("https://legacy.test/", "/"),
    ("http://legacy.test:8080/", "/"),
    ("https://partner.test:443/cb", "https://partner.test:443/cb"),
    ("https://partner.test:8443/cb", "/"),
    ("http://partner.test/cb", "/"),  # no http to an allowed host
    ("https://app.example.com:8443/", "/"),
    ("http://app.example.com/", "/"),
    ("https://partner.test./cb", "https://partner.test./cb"),
    ("https://PARTNER.TEST/cb", "https://PARTNER.TEST/cb"),
    # the page's own host: same port, same scheme
    ("https://app.test:443/x", "https://app.test:443/x"),
    ("https://app.test.:443/x", "https://app.test.:443/x"),
    ("https://app.test:8443/x", "/"),
    ("http://app.test:443/x", "/"),
    ("https://[::1/", "/"),
    ("https://app.test:/x", "/"),
    ("https://a..test/", "/"),
    ("https://évil.test/", "/"),
    ("x" * 3000, "/"),
    ("\x00/x", "/"),
])
def test_safe_redirect(target: str | None, expected: str) -> None:
    assert safe_redirect(target, "https", "app.test", ALLOWED) == expected


@pytest.mark.parametrize(("target", "scheme", "host", "expected"), [
    ("https://app.test/x", "http", "app.test", "https://app.test/x"),  # an upgrade to https
    ("https://app.test:8080/x", "http", "app.test:8080", "https://app.test:8080/x"),
    ("http://app.test:8080/x", "http", "app.test:8080", "http://app.test:8080/x"),
    ("http://app.test:8080/x", "https", "app.test:8080", "/"),  # never a downgrade
    ("http://app.test/x", "https", "app.test", "/"),
    ("https://app.test:80/x", "http", "app.test", "/"),  # the page's port is 80
    ("https://app.test/x", "https", "app.test:8443", "/"),
    ("https://app.test:8443/x", "https", "app.test:8443", "https://app.test:8443/x"),
    ("https://[::1]:8443/x", "https", "[::1]:8443", "https://[::1]:8443/x"),
    ("https://[0::1]:8443/x", "https", "[::1]:8443", "https://[0::1]:8443/x"),
    ("https://[::2]:8443/x", "https", "[::1]:8443", "/"),
])
def test_safe_redirect_same_origin(target: str, scheme: str, host: str, expected: str) -> None:
    assert safe_redirect(target, scheme, host, ()) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("app.test", ("app.test", None)),
    ("App.Test", ("app.test", None)),
    ("app.test.", ("app.test", None)),
    ("app.test.:8080", ("app.test", 8080)),
    ("app.test:443", ("app.test", 443)),
    ("_acme.app-1.test", ("_acme.app-1.test", None)),
    ("localhost", ("localhost", None)),
    ("192.0.2.1:8080", ("192.0.2.1", 8080)),
    ("[::1]", ("[::1]", None)),
    ("[0:0::1]:8443", ("[::1]", 8443)),
    ("[2001:DB8::1]", ("[2001:db8::1]", None)),
])
def test_parse_host(value: str, expected: tuple[str, int | None]) -> None:
    assert parse_host(value) == expected


BAD_HOSTS = ["", "[::1", "[::1]x", "[fe80::1%eth0]", "[1.2.3.4]", "::1", "a b", "a\tb", "x:99999",
             "x:0", "x:", "x:8o", "x:123456", "x:1:2", "a..b", ".a", ".", "..", "a.b..", "é.test",
             "xn--e.test\u00e9", "a/b", "a@b", "a?b", "a#b", "a\\b", "a,b", "a;b", "1.2.3.999",
             "1.2.3", "01.2.3.4", "0x7f.0.0.1", "a" * 64 + ".test", "a." * 130 + "test"]


@pytest.mark.parametrize("value", BAD_HOSTS)
def test_parse_host_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_host(value)


@pytest.mark.parametrize("value", [h for h in BAD_HOSTS if h])  # no Host: the parts fallback
def test_malformed_forwarded_host_is_a_bad_request(value: str) -> None:
    attempts = [{"x-forwarded-host": value, "x-original-uri": "/"}, {"host": value, "x-original-uri": "/"}]
    if not any(c in value for c in "/?#"):  # those end the host of a URL
        attempts.append({"x-original-url": f"https://{value}/"})
    for headers in attempts:
        with pytest.raises(BadForwardedRequest):
            original_for_nginx(headers)
    with pytest.raises(BadForwardedRequest):
        original_for_forward({"x-forwarded-method": "GET", "x-forwarded-host": value,
                              "x-forwarded-uri": "/"})


@pytest.mark.parametrize("url", ["http://[::1/x", "http://[::1", "https://[/", "http://app.test:x/",
                                 "https://app.te\tst/", "https://app.test/ad\nmin", "https://app.test/\x7f"])
def test_unparsable_original_url_is_a_bad_request(url: str) -> None:
    with pytest.raises(BadForwardedRequest):
        original_for_nginx({"x-original-url": url})


@pytest.mark.parametrize(("headers", "host"), [
    ({"x-original-url": "https://App.Test.:443/a"}, "app.test"),
    ({"x-original-url": "http://app.test.:80/a"}, "app.test"),
    ({"x-original-url": "http://app.test:443/a"}, "app.test:443"),
    ({"x-original-url": "https://app.test.:8443/a"}, "app.test:8443"),
    ({"x-original-url": "https://[::1]:443/a"}, "[::1]"),
    ({"x-forwarded-proto": "https", "x-forwarded-host": "APP.test.:443", "x-original-uri": "/"},
     "app.test"),
    ({"x-forwarded-proto": "https", "x-forwarded-host": "app.test:80", "x-original-uri": "/"},
     "app.test:80"),
    ({"host": "app.test.", "x-original-uri": "/"}, "app.test"),
])
def test_hosts_are_canonical(headers: dict[str, str], host: str) -> None:
    assert original_for_nginx(headers | {"x-original-method": "GET"}).host == host


def test_forward_hosts_compare_canonically() -> None:
    headers = {"x-forwarded-method": "GET", "x-forwarded-proto": "https",
               "x-forwarded-host": "app.test.", "x-forwarded-uri": "/a",
               "x-original-url": "https://APP.TEST:443/a"}
    assert original_for_forward(headers).host == "app.test"


@pytest.mark.parametrize(("headers", "trusted", "expected"), [
    ({"host": "App.Test.:8080"}, False, ("http", "app.test:8080")),
    ({"host": "app.test:80"}, False, ("http", "app.test")),
    ({"host": "x", "x-forwarded-proto": "https", "x-forwarded-host": "app.test.:443"}, True,
     ("https", "app.test")),
    ({}, False, ("http", "localhost")),
])
def test_page_origin(headers: dict[str, str], trusted: bool, expected: tuple[str, str]) -> None:
    assert page_origin(headers, trusted, "http") == expected


@pytest.mark.parametrize("host", ["[::1", "a b", "x:99999", "a..b"])
def test_page_origin_refuses_a_malformed_host(host: str) -> None:
    with pytest.raises(BadForwardedRequest):
        page_origin({"host": host}, False, "http")


@pytest.mark.parametrize(("entry", "expected"), [
    ("partner.test", "partner.test"),
    ("Partner.Test.", "partner.test"),
    (".Example.com", ".example.com"),
    ("https://x.corp.test:8443", "https://x.corp.test:8443"),
    ("HTTPS://X.Corp.Test:443", "https://x.corp.test"),
    ("http://legacy.test", "http://legacy.test"),
    ("http://legacy.test:80", "http://legacy.test"),
    ("https://[::1]:8443", "https://[::1]:8443"),
    ("192.0.2.1", "192.0.2.1"),
])
def test_redirect_entry(entry: str, expected: str) -> None:
    assert redirect_entry(entry) == expected


@pytest.mark.parametrize("entry", ["", ".", "x.test:8443", "https://x.test/", "https://x.test/a",
                                   "https://x.test?a", "https://u@x.test", "ftp://x.test", "https://",
                                   "*.example.com", ".1.2.3.4", ".[::1]", "a..b", "évil.test",
                                   "https://x.test:99999", "//x.test"])
def test_redirect_entry_refuses(entry: str) -> None:
    with pytest.raises(ValueError):
        redirect_entry(entry)
