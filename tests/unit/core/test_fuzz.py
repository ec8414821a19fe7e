"""Property-based tests: random bytes, huge values, unicode and NUL never crash and never allow."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.core import recovery, totp
from sidecar.core.forwarded import original_for_forward, original_for_nginx, safe_redirect, wants_html
from sidecar.core.paths import normalize_path
from sidecar.core.policy import Facts, Level, Outcome, Policy, Rule, Subject, Target, decide
from sidecar.core.tokens import Pass, PassCodec
from sidecar.errors import BadForwardedRequest

FAST = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
nasty_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8")),
    st.binary().map(lambda b: b.decode("latin-1")),
    st.text(alphabet="/\\.%2eEfF5cC0\x00?#@:; \t", max_size=60),
    st.integers(0, 20_000).map(lambda n: "/" + "a" * n),
)


@FAST
@given(st.sampled_from(list(Level)), st.one_of(st.none(), st.text(min_size=1)), st.booleans(),
       st.booleans(), st.sampled_from(("session", "basic", "bearer")), st.booleans())
def test_decide_never_allows_an_unverified_enrolled_user(level: Level, user: str | None,
                                                         enrolled: bool, verified: bool,
                                                         credential: str, bearer_passes: bool) -> None:
    outcome = decide(Facts(level, user, enrolled, verified, credential, bearer_passes))
    assert isinstance(outcome, Outcome)
    if level is Level.DENY:
        assert outcome is Outcome.DENY
    if outcome is Outcome.ALLOW and user is not None and enrolled and level is not Level.BYPASS:
        assert verified or (credential == "bearer" and bearer_passes)


@FAST
@given(nasty_text)
def test_normalized_paths_are_clean(raw: str) -> None:
    path = normalize_path(raw)
    if path is None:
        return
    assert path.startswith("/") and "\x00" not in path and "\\" not in path
    segments = path.split("/")
    assert ".." not in segments and "." not in segments
    assert "//" not in path
    assert normalize_path(path) == path  # stable: normalizing twice changes nothing


BYPASS_STATIC = Policy((Rule(Level.BYPASS, paths=("/static/",)),), Level.REQUIRED)


@FAST
@given(nasty_text)
def test_only_paths_really_below_static_are_bypassed(raw: str) -> None:
    level = BYPASS_STATIC.level_for(Target("app.test", raw), Subject("alice"))
    path = normalize_path(raw)
    if level is Level.BYPASS:
        assert path is not None and (path == "/static" or path.startswith("/static/"))


@FAST
@given(nasty_text)
def test_tricks_in_front_of_admin_never_reach_bypass(suffix: str) -> None:
    for prefix in ("/static/../", "/static/%2e%2e/", "/static/%252e%252e/", "/static\\..\\"):
        raw = prefix + "admin" + suffix.replace("/", "")
        assert BYPASS_STATIC.level_for(Target("app.test", raw), Subject("alice")) is not Level.BYPASS


@FAST
@given(nasty_text, st.sampled_from(("https", "http")))
def test_safe_redirect_stays_home(target: str, scheme: str) -> None:
    result = safe_redirect(target, scheme, "app.test", (".example.com",))
    if result.startswith("/"):
        assert not result.startswith("//") and "\\" not in result
        assert not re.search(r"[\x00-\x20\x7f]", result)
        return
    parts = urlsplit(result)
    assert parts.scheme in ("http", "https")
    host = (parts.hostname or "").lower()
    assert host == "app.test" or host == "example.com" or host.endswith(".example.com")
    assert "@" not in parts.netloc


@FAST
@given(nasty_text)
def test_code_parsers_accept_only_what_they_should(text: str) -> None:
    code = totp.parse_code(text, 6)
    assert code is None or (len(code) == 6 and code.isascii() and code.isdigit())
    normalized = recovery.normalize(text)
    assert normalized is None or (len(normalized) == 10
                                  and all(c in recovery.ALPHABET for c in normalized))
    secret = totp.new_secret()
    step = totp.match_step(secret, text, 1_800_000_000)
    assert step is None or code is not None


CODEC = PassCodec(("k" * 40,))


@FAST
@given(nasty_text)
def test_cookie_decoder_never_crashes_or_accepts_junk(value: str) -> None:
    assert CODEC.loads(value) is None


@FAST
@given(st.text(min_size=1, max_size=50), st.text(max_size=30), st.integers(0, 2**40),
       st.integers(0, 2**40), st.integers(0, 2**31), st.integers(0, 200), st.text(max_size=3))
def test_cookie_round_trip_and_any_change_breaks_it(user: str, fp: str, issued: int, seen: int,
                                                     generation: int, position: int,
                                                     junk: str) -> None:
    item = Pass(user, fp, issued, seen, generation)
    value = CODEC.dumps(item)
    assert CODEC.loads(value) == item
    index = position % len(value)
    changed = value[:index] + junk + value[index + 1:]
    if changed != value:
        assert CODEC.loads(changed) in (None, item)  # base64 padding quirks may decode the same


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["x-original-url", "x-original-uri", "x-original-method",
                                        "x-forwarded-host", "x-forwarded-proto", "x-forwarded-uri",
                                        "x-forwarded-method", "host"]), nasty_text, max_size=8))
def test_forwarded_header_parsers_raise_only_their_error(headers: dict[str, str]) -> None:
    for parse in (original_for_nginx, original_for_forward):
        try:
            original = parse(headers)
        except BadForwardedRequest:
            continue
        assert original.scheme in ("http", "https")
        assert original.path.startswith("/") and original.method.isalpha()


@FAST
@given(nasty_text)
def test_accept_parser(accept: str) -> None:
    assert wants_html(accept) in (True, False)
