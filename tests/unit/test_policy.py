"""The pure decision and the rule engine, as tables."""

from __future__ import annotations

import re

import pytest

from sidecar.config import Rule
from sidecar.policy import Facts, Outcome, decide, level_for, normalize_path

A = Outcome.ALLOW
C = Outcome.CHALLENGE
E = Outcome.ENROLL
D = Outcome.DENY


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
    assert decide(Facts(level, user, enrolled, verified)) is expected


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
    Rule("bypass", paths=("/static/", "/login")),
    Rule("deny", paths=("/internal",)),
    Rule("required", hosts=("*.admin.test",)),
    Rule("required", paths=("/billing",), methods=frozenset({"POST"})),
    Rule("required", users=frozenset({"carol"})),
    Rule("bypass", path_regex=re.compile(r"^/health(z)?$")),
)


@pytest.mark.parametrize(
    ("host", "path", "method", "user", "expected"),
    [
        ("app.test", "/static/app.css", "GET", None, "bypass"),
        ("app.test", "/static/../admin", "GET", "alice", "optional"),
        ("app.test", "/static/%2e%2e/admin", "GET", "alice", "optional"),
        ("app.test", "//static/x", "GET", None, "bypass"),
        ("app.test", "/login", "POST", None, "bypass"),
        ("app.test", "/login-other", "GET", None, "optional"),
        ("app.test", "/loginx/../login", "GET", None, "bypass"),
        ("app.test", "/internal/x", "GET", "alice", "deny"),
        ("app.test", "/INTERNAL", "GET", "alice", "optional"),  # paths are case-sensitive
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
        ("app.test", "/x/../_2fa/settings", "GET", "alice", "bypass"),
        ("app.test", "/_2faX", "GET", "alice", "optional"),
    ],
)
def test_level_for(host: str, path: str, method: str, user: str | None, expected: str) -> None:
    assert level_for(RULES, "optional", host, path, method, user, own_prefix="/_2fa") == expected


def test_default_level_applies_when_nothing_matches() -> None:
    assert level_for((), "required", "app.test", "/", "GET", "alice") == "required"


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
    facts = Facts("optional", "alice", True, verified, credential, bearer_passes)
    assert decide(facts) is expected
    assert decide(Facts("optional", "alice", False, False, credential, bearer_passes)) is A


def test_group_rules() -> None:
    rules = (Rule("required", groups=frozenset({"admins"})),)
    assert level_for(rules, "optional", "h", "/", "GET", "carol", groups=("admins", "x")) == "required"
    assert level_for(rules, "optional", "h", "/", "GET", "alice", groups=("staff",)) == "optional"
    assert level_for(rules, "optional", "h", "/", "GET", None) == "optional"
