"""The pure decision and the rule engine, as tables."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core.paths import Variant, normalize_path, path_variants, strip_parameters
from sidecar.core.policy import (
    DENY_RULE,
    Facts,
    Level,
    Outcome,
    Policy,
    Rule,
    Subject,
    Target,
    decide,
    rule_matches,
    strictness,
)

A = Outcome.ALLOW
C = Outcome.CHALLENGE
E = Outcome.ENROLL
D = Outcome.DENY


def rule_for(rules: tuple[Rule, ...], default: str, host: str, path: str, method: str,
             user: str | None, own_prefix: str = "", groups: tuple[str, ...] = ()) -> Rule:
    """``Policy.rule_for`` spelled flat, for the tables below."""
    return Policy(rules, Level(default), own_prefix).rule_for(Target(host, path, method),
                                                              Subject(user, groups))


def level_for(rules: tuple[Rule, ...], default: str, host: str, path: str, method: str,
              user: str | None, own_prefix: str = "", groups: tuple[str, ...] = ()) -> Level:
    return rule_for(rules, default, host, path, method, user, own_prefix, groups).level


@pytest.mark.parametrize(
    ("level", "user", "enrolled", "verified", "expected"),
    [
        # anonymous: the app shows its own login, whatever the level (but deny)
        ("optional", None, False, False, A),
        ("required", None, False, False, A),
        ("bypass", None, False, False, A),
        ("deny", None, False, False, D),
        # logged in, never enrolled: opt-in unless a rule requires it
        ("optional", "alice", False, False, A),
        ("required", "alice", False, False, E),
        ("bypass", "alice", False, False, A),
        ("deny", "alice", False, False, D),
        # enrolled, not yet verified in this app session
        ("optional", "alice", True, False, C),
        ("required", "alice", True, False, C),
        ("bypass", "alice", True, False, A),
        ("deny", "alice", True, False, D),
        # enrolled and verified
        ("optional", "alice", True, True, A),
        ("required", "alice", True, True, A),
        ("bypass", "alice", True, True, A),
        ("deny", "alice", True, True, D),
    ],
)
def test_decide(level: str, user: str | None, enrolled: bool, verified: bool,
                expected: Outcome) -> None:
    assert decide(Facts(Level(level), user, enrolled, verified)) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/admin", "/admin"),
        ("/static/../admin", "/admin"),
        ("/static/%2e%2e/admin", "/admin"),
        ("/static/%2E%2E/admin", "/admin"),
        ("/static/%252e%252e/admin", "/admin"),
        ("//admin", "/admin"),
        ("/static//..//admin", "/admin"),
        ("/./admin", "/admin"),
        ("/static/..%2fadmin", "/admin"),
        ("/static\\..\\admin", "/admin"),
        ("/static/%5c..%5cadmin", "/admin"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/static/", "/static/"),
        ("/static/.", "/static/"),
        ("/a/b/..", "/a/"),
        ("/admin?next=/static/", "/admin"),
        ("/admin#frag", "/admin"),
        ("/%00admin", None),
        ("admin", None),
        ("/%ff%fe", None),
    ],
)
def test_normalize_path(raw: str, expected: str | None) -> None:
    assert normalize_path(raw) == expected


RULES = (
    Rule(Level.BYPASS, paths=("/static/", "/login")),
    Rule(Level.DENY, paths=("/internal",)),
    Rule(Level.REQUIRED, hosts=("*.admin.test",)),
    Rule(Level.REQUIRED, paths=("/billing",), methods=frozenset({"POST"})),
    Rule(Level.REQUIRED, users=frozenset({"carol"})),
    Rule(Level.BYPASS, path_regex=re.compile(r"^/health(z)?$")),
)


@pytest.mark.parametrize(
    ("host", "path", "method", "user", "expected"),
    [
        ("app.test", "/static/app.css", "GET", None, "bypass"),
        ("app.test", "/static/../admin", "GET", "alice", "optional"),
        ("app.test", "/static/%2e%2e/admin", "GET", "alice", "optional"),
        ("app.test", "//static/x", "GET", None, "optional"),  # an app may not collapse "//"
        ("app.test", "/login", "POST", None, "bypass"),
        ("app.test", "/login-other", "GET", None, "optional"),
        ("app.test", "/loginx/../login", "GET", None, "optional"),  # nor resolve ".."
        ("app.test", "/internal/x", "GET", "alice", "deny"),
        ("app.test", "/INTERNAL", "GET", "alice", "deny"),  # some backends ignore case
        ("app.test", "/Static/app.css", "GET", None, "optional"),  # ... never to bypass
        ("x.admin.test.", "/", "GET", "alice", "required"),
        ("X.Admin.Test.:8443", "/", "GET", "alice", "required"),
        ("x.admin.test", "/", "GET", "alice", "required"),
        ("X.ADMIN.TEST", "/", "GET", "alice", "required"),
        ("x.admin.test:8443", "/", "GET", "alice", "required"),
        ("admin.test", "/", "GET", "alice", "optional"),
        ("evil-admin.test", "/", "GET", "alice", "optional"),
        ("app.test", "/billing", "POST", "alice", "required"),
        ("app.test", "/billing", "GET", "alice", "optional"),
        ("app.test", "/anything", "GET", "carol", "required"),
        ("app.test", "/healthz", "GET", None, "bypass"),
        ("app.test", "/healthzz", "GET", None, "optional"),
        ("app.test", "/public?x=/static/", "GET", None, "optional"),
        ("app.test", "/public?/internal", "GET", None, "optional"),
        ("app.test", "/%00", "GET", None, "deny"),
        ("app.test", "/_2fa/challenge", "GET", "alice", "bypass"),
        ("app.test", "/x/../_2fa/settings", "GET", "alice", "optional"),  # as sent: not the pages
        ("app.test", "/_2faX", "GET", "alice", "optional"),
    ],
)
def test_level_for(host: str, path: str, method: str, user: str | None, expected: str) -> None:
    assert level_for(RULES, "optional", host, path, method, user, own_prefix="/_2fa") is Level(expected)


def test_default_level_applies_when_nothing_matches() -> None:
    assert level_for((), "required", "app.test", "/", "GET", "alice") is Level.REQUIRED


@pytest.mark.parametrize(
    ("credential", "bearer_passes", "verified", "expected"),
    [
        ("basic", True, False, Outcome.OTP),
        ("basic", True, True, A),
        ("bearer", True, False, A),
        ("bearer", False, False, Outcome.OTP),
        ("session", True, False, C),
    ],
)
def test_api_clients(credential: str, bearer_passes: bool, verified: bool, expected: Outcome) -> None:
    facts = Facts(Level.OPTIONAL, "alice", True, verified, credential, bearer_passes)
    assert decide(facts) is expected
    assert decide(Facts(Level.OPTIONAL, "alice", False, False, credential, bearer_passes)) is A


def test_group_rules() -> None:
    rules = (Rule(Level.REQUIRED, groups=frozenset({"admins"})),)
    assert level_for(rules, "optional", "h", "/", "GET", "carol", groups=("admins", "x")) is Level.REQUIRED
    assert level_for(rules, "optional", "h", "/", "GET", "alice", groups=("staff",)) is Level.OPTIONAL
    assert level_for(rules, "optional", "h", "/", "GET", None) is Level.OPTIONAL


#: The rules of the attacker's report: what Tomcat, Spring or Express route differently.
ROUTING = (
    Rule(Level.BYPASS, paths=("/login", "/static/")),
    Rule(Level.REQUIRED, paths=("/reports",)),
    Rule(Level.DENY, paths=("/internal", "/admin")),
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/login", "bypass"),
        ("/static/app.css", "bypass"),
        ("/reports", "required"),
        ("/internal", "deny"),
        ("/public", "optional"),
        # ;parameters are stripped per segment before dot segments are resolved (Tomcat, Jetty)
        ("/login/..;/admin", "deny"),
        ("/static/..;/admin", "deny"),
        ("/static/..;x=1/admin", "deny"),
        ("/login;x/../admin", "deny"),
        ("/login/%2e%2e;/admin", "deny"),
        ("/login/..%3b/admin", "deny"),  # %3B counts as ;
        ("/login/..%253b/admin", "deny"),
        ("/internal;jsessionid=x", "deny"),
        ("/internal;jsessionid=x/data", "deny"),
        ("/reports;.css", "required"),
        ("/reports;/x", "required"),
        ("/;x/internal", "deny"),
        # letter case (Express, ASP.NET)
        ("/REPORTS", "required"),
        ("/Reports/2024", "required"),
        ("/Internal", "deny"),
        ("/ADMIN;x", "deny"),
        ("/Login/..;/Admin", "deny"),
        ("/static/%2E%2E;/ADMIN", "deny"),
        # a variant never borrows a weaker level than the plain path's
        ("/Login", "optional"),
        ("/STATIC/app.css", "optional"),
        ("/static;x/app.css", "optional"),
        ("/login;x", "optional"),
        # the sidecar's own prefix: bypass only for the variants inside it
        ("/_2fa/challenge", "bypass"),
        ("/_2fa/..;/admin", "deny"),
        ("/_2fa/..;/reports", "required"),
        ("/_2fa/..;/public", "optional"),
        ("/_2FA/challenge", "optional"),
        ("/_2fa;x/challenge", "optional"),
        ("/_2fa/x;y", "bypass"),
        ("/%00;x", "deny"),
    ],
)
def test_strictest_variant_wins(path: str, expected: str) -> None:
    level = level_for(ROUTING, "optional", "app.test", path, "GET", "alice", own_prefix="/_2fa")
    assert level is Level(expected)


@pytest.mark.parametrize(("path", "expected"), [
    ("/Two-Factor/challenge", "bypass"),  # every variant is inside, the folded one too
    ("/two-factor/challenge", "required"),
    ("/Two-Factor/..;/x", "required"),
])
def test_a_prefix_in_capitals(path: str, expected: str) -> None:
    assert level_for((), "required", "h", path, "GET", "alice", own_prefix="/Two-Factor") is Level(expected)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/a", [Variant("/a"), Variant("/a", True)]),
        ("/A;x", [Variant("/A;x"), Variant("/a;x", True), Variant("/A"), Variant("/a", True)]),
        ("/login/..;/admin", [Variant("/login/..;/admin"), Variant("/login/..;/admin", True),
                              Variant("/admin"), Variant("/admin", True),
                              Variant("/login/../admin"), Variant("/login/../admin", True)]),
        ("/%3b", [Variant("/;"), Variant("/;", True), Variant("/"), Variant("/", True),
                  Variant("/%3b"), Variant("/%3b", True)]),
        ("/%ff", None),
        ("x", None),
    ],
)
def test_path_variants(raw: str, expected: list[Variant] | None) -> None:
    found = path_variants(raw)
    assert (None if found is None else list(found)) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/a;x/b", "/a/b"), ("/..;/a", "/../a"), ("/a;b;c", "/a"), ("/;x", "/"), ("/a/b", "/a/b")],
)
def test_strip_parameters(path: str, expected: str) -> None:
    assert strip_parameters(path) == expected


def test_levels_are_ranked() -> None:
    assert Level.DENY > Level.REQUIRED > Level.OPTIONAL > Level.BYPASS
    ordered = [Rule(Level.BYPASS), Rule(Level.OPTIONAL), Rule(Level.OPTIONAL, step_up=600),
               Rule(Level.OPTIONAL, step_up=60), Rule(Level.REQUIRED), Rule(Level.REQUIRED, step_up=60),
               Rule(Level.DENY)]
    assert sorted(reversed(ordered), key=strictness) == ordered


@pytest.mark.parametrize(
    ("path", "step_up"),
    [
        ("/a", 60),  # /A (case-folded) asks for a fresher code than /a
        ("/b", 600),  # the plain rule, the only one
        ("/b;x", 600),
        ("/c;x", 30),  # the stripped variant's window is the smaller one
    ],
)
def test_step_up_window_breaks_ties(path: str, step_up: int) -> None:
    rules = (Rule(Level.OPTIONAL, paths=("/A",), step_up=60),
             Rule(Level.OPTIONAL, paths=("/a", "/b"), step_up=600),
             Rule(Level.OPTIONAL, paths=("/c;x",), step_up=300),
             Rule(Level.OPTIONAL, paths=("/c",), step_up=30))
    assert rule_for(rules, "optional", "h", path, "GET", "alice").step_up == step_up


def test_a_tie_keeps_the_plain_paths_rule() -> None:
    rules = (Rule(Level.REQUIRED, paths=("/x;y",)), Rule(Level.REQUIRED, paths=("/x",)))
    assert rule_for(rules, "optional", "h", "/x;y", "GET", None) is rules[0]


def test_unnormalizable_path_is_denied() -> None:
    assert rule_for(ROUTING, "optional", "h", "/%ff;x", "GET", None) is DENY_RULE


@pytest.mark.parametrize(
    ("rule", "path", "folded", "matches"),
    [
        (Rule(Level.DENY, paths=("/Admin",)), "/admin", True, True),
        (Rule(Level.DENY, paths=("/Admin",)), "/admin", False, False),
        (Rule(Level.DENY, path_regex=re.compile(r"^/Admin$")), "/admin", True, True),
        (Rule(Level.DENY, path_regex=re.compile(r"^/Admin$")), "/admin", False, False),
        (Rule(Level.DENY, path_regex=re.compile(r"^/admin$")), "/admin", True, True),
    ],
)
def test_folded_variants_match_case_insensitively(rule: Rule, path: str, folded: bool,
                                                  matches: bool) -> None:
    assert rule_matches(rule, Target("h", path), Subject(None), folded=folded) is matches


@pytest.mark.parametrize(
    ("host", "matches"),
    [("app.test", True), ("APP.test.", True), ("app.test:8443", True), ("app.test.:8443", True),
     ("app.testx", False), ("[::1]:8443", False)],
)
def test_rule_hosts_ignore_port_and_trailing_dot(host: str, matches: bool) -> None:
    assert rule_matches(Rule(Level.DENY, hosts=("app.test",)), Target(host, "/"), Subject(None)) is matches


def test_ipv6_rule_host() -> None:
    rule = Rule(Level.DENY, hosts=("[::1]",))
    assert rule_matches(rule, Target("[::1]:8443", "/"), Subject(None))
    assert rule_matches(rule, Target("[::1]", "/"), Subject(None))


SEGMENT = st.one_of(st.sampled_from(["login", "static", "reports", "internal", "admin", "_2fa",
                                     "..", ".", "", "x", "app.css"]),
                    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=8))
PLAIN_PATH = st.lists(SEGMENT, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts))
PARAMETER = st.text(alphabet="abcxyz=.;%/3bB", max_size=6).map(lambda p: ";" + p.replace("/", ""))


def _rank(path: str) -> int:
    return level_for(ROUTING, "optional", "app.test", path, "GET", "alice", own_prefix="/_2fa").rank


@settings(max_examples=300, deadline=None)
@given(PLAIN_PATH, st.data())
def test_parameters_never_weaken_the_level(path: str, data: st.DataObject) -> None:
    segments = path.split("/")
    index = data.draw(st.integers(1, len(segments) - 1))
    segments[index] += data.draw(PARAMETER)
    assert _rank("/".join(segments)) >= _rank(path)


@settings(max_examples=300, deadline=None)
@given(PLAIN_PATH, st.data())
def test_letter_case_never_weakens_the_level(path: str, data: st.DataObject) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(path), max_size=len(path)))
    changed = "".join(c.upper() if flip else c for c, flip in zip(path, flips, strict=True))
    assert _rank(changed) >= _rank(path)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["app.test", "App.Test:8443", "x.admin.test"]),
                          st.text("/.;%2eADMINlogstcr", max_size=24),
                          st.sampled_from(["GET", "POST"])), min_size=1, max_size=30))
def test_a_kept_rule_is_the_rule_found_again(targets: list[tuple[str, str, str]]) -> None:
    policy = Policy(ROUTING, Level.OPTIONAL, "/_2fa")
    for host, path, method in [*targets, *reversed(targets)]:  # the second time from memory
        target = Target(host, path, method)
        assert policy.rule_for(target, Subject("alice")) == policy.find_rule(target, Subject(None))


def test_rules_that_look_at_the_user_are_never_kept() -> None:
    policy = Policy(RULES, Level.OPTIONAL, "/_2fa")
    target = Target("app.test", "/anything")
    assert policy.rule_for(target, Subject("alice")).level is Level.OPTIONAL
    assert policy.rule_for(target, Subject("carol")).level is Level.REQUIRED


def test_kept_rules_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sidecar.core.policy.KNOWN_RULES", 10)
    policy = Policy(ROUTING)
    for n in range(25):
        assert policy.rule_for(Target("h", f"/internal/{n}"), Subject(None)).level is Level.DENY
    assert policy.rule_for(Target("h", "/login/" + "x" * 300), Subject(None)).level is Level.BYPASS
    assert len(policy._known) <= 10
