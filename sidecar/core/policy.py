"""The rule engine and the decision: request facts in, outcome out. No I/O, no framework.

A ``Policy`` (the ordered rules, the default level, the sidecar's own prefix) finds the rule
for a ``Target`` (host, path, method: what the user wants) and a ``Subject`` (who asks):
first match wins, on a normalized path (``sidecar.core.paths``) so that ``/static/../admin``
cannot borrow the level of ``/static/``. A path that backends may route differently
(``;parameters``, letter case) is matched in each such variant, and the strictest rule wins.
``decide`` turns the level and what is known about the user into allow / challenge /
enroll / deny.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from functools import lru_cache

from sidecar.core.paths import Variant, path_variants

KNOWN_RULES = 4096  # (host, path, method) → rule kept by a Policy
KNOWN_PATH = 256  # longer paths are matched each time


@functools.total_ordering
class Level(enum.Enum):
    """The access levels, ranked: ``deny`` > ``required`` > ``optional`` > ``bypass``."""

    BYPASS = "bypass"
    OPTIONAL = "optional"
    REQUIRED = "required"
    DENY = "deny"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Level):
            return NotImplemented
        return self.rank < other.rank


_RANKS = {level: rank for rank, level in enumerate(Level)}


class Outcome(enum.Enum):
    ALLOW = "allow"
    CHALLENGE = "challenge"  # enrolled, not yet verified in this app session
    OTP = "otp"  # an API client with a password: a code must come in the X-OTP header
    STEP_UP = "step_up"  # verified, but a rule wants a code typed more recently
    ENROLL = "enroll"  # 2FA required by a rule, user not enrolled
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Rule:
    """One access rule; the first rule that matches a request decides its level."""

    level: Level
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    path_regex: re.Pattern[str] | None = None
    methods: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    step_up: int = 0  # seconds: a code must have been typed this recently (0 = no step-up)


@dataclass(frozen=True, slots=True)
class Target:
    """What the user wants: the host, path and method the rules are matched against."""

    host: str
    path: str
    method: str = "GET"


@dataclass(frozen=True, slots=True)
class Subject:
    """Who asks: the user the app says is logged in (None: nobody) and their groups."""

    user: str | None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    level: Level
    user: str | None  # None: no primary session (anonymous)
    enrolled: bool = False
    verified: bool = False  # a valid 2FA cookie for this user and this app session
    credential: str = "session"  # session (cookies) | basic | bearer (the Authorization scheme)
    bearer_passes: bool = True  # api.bearer: pass
    code_is_recent: bool = True  # a code was typed within the matched rule's step_up window


def decide(facts: Facts) -> Outcome:
    """The verdict for one request."""
    if facts.level is Level.DENY:
        return Outcome.DENY
    if facts.level is Level.BYPASS or facts.user is None:
        return Outcome.ALLOW  # anonymous: the app shows its own login
    if facts.enrolled:
        if facts.verified:
            return Outcome.ALLOW if facts.code_is_recent else Outcome.STEP_UP
        if facts.credential == "bearer":
            return Outcome.ALLOW if facts.bearer_passes else Outcome.OTP
        return Outcome.OTP if facts.credential == "basic" else Outcome.CHALLENGE
    if facts.level is Level.REQUIRED:
        return Outcome.ENROLL
    return Outcome.ALLOW


def strictness(rule: Rule) -> tuple[int, int, int]:
    """A sort key: the higher, the stricter the rule.

    The level comes first (``deny`` > ``required`` > ``optional`` > ``bypass``); between
    equal levels a rule with a step-up window is stricter, and a smaller window stricter still.
    """
    return rule.level.rank, 1 if rule.step_up else 0, -rule.step_up


def _hostname(host: str) -> str:
    """``host`` without its port and trailing dot, in lower case (``App.Test.:8080`` -> ``app.test``)."""
    if not host.endswith("]"):
        host = host.rsplit(":", 1)[0]
    return host.lower().rstrip(".")


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _path_matches(prefix: str, path: str) -> bool:
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix[:-1]
    return path == prefix or path.startswith(prefix + "/")


@lru_cache(maxsize=256)
def _ignoring_case(pattern: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(pattern.pattern, pattern.flags | re.IGNORECASE)


def rule_matches(rule: Rule, target: Target, subject: Subject, folded: bool = False) -> bool:
    """Whether every condition of ``rule`` holds for ``target`` (whose path is normalized).

    The host is compared without port and trailing dot. ``folded``: the path is a
    case-folded variant, so rule paths are case-folded too and ``path_regex`` is searched
    ignoring case.
    """
    hostname = _hostname(target.host)
    if rule.hosts and not any(_host_matches(h, hostname) for h in rule.hosts):
        return False
    if rule.methods and target.method not in rule.methods:
        return False
    user = subject.user
    if rule.users and (user is None or user not in rule.users):
        return False
    if rule.groups and (user is None or rule.groups.isdisjoint(subject.groups)):
        return False
    path = target.path
    if rule.paths and not any(_path_matches(p.casefold() if folded else p, path) for p in rule.paths):
        return False
    if rule.path_regex is None:
        return True
    regex = _ignoring_case(rule.path_regex) if folded else rule.path_regex
    return regex.search(path) is not None


DENY_RULE = Rule(Level.DENY)
BYPASS_RULE = Rule(Level.BYPASS)


def _inside(prefix: str, variant: Variant) -> bool:
    prefix = prefix.casefold() if variant.folded else prefix
    return variant.path == prefix or variant.path.startswith(prefix + "/")


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules in order, the level when none matches, and the sidecar's own page prefix."""

    rules: tuple[Rule, ...] = ()
    default: Level = Level.OPTIONAL
    own_prefix: str = ""
    #: Rules the sidecar adds (the app's login and logout pages: ``bypass``). One that matches
    #: replaces the operator's first match, unless that is ``deny``: never weaker than a deny.
    implicit: tuple[Rule, ...] = ()
    #: The rule of each recent (host, path, method), when no rule looks at the user: every
    #: request asks, and an app has few paths (bounded: emptied when full).
    _known: dict[tuple[str, str, str], Rule] = field(default_factory=dict, compare=False, repr=False)
    _by_subject: bool = field(default=False, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        by_subject = any(rule.users or rule.groups for rule in (*self.rules, *self.implicit))
        object.__setattr__(self, "_by_subject", by_subject)

    def rule_for(self, target: Target, subject: Subject) -> Rule:
        """``find_rule``, kept for paths of up to ``KNOWN_PATH`` characters when it can be."""
        if self._by_subject or len(target.path) > KNOWN_PATH:
            return self.find_rule(target, subject)
        key = (target.host, target.path, target.method)
        rule = self._known.get(key)
        if rule is None:
            if len(self._known) >= KNOWN_RULES:
                self._known.clear()
            rule = self._known[key] = self.find_rule(target, subject)
        return rule

    def find_rule(self, target: Target, subject: Subject) -> Rule:
        """The strictest of the rules that the target's path and its variants match.

        For each variant (``path_variants``) the first matching rule counts (or one with the
        default level); the strictest of those wins (see ``strictness``), the plain path's on
        a tie. An unnormalizable path is denied. The sidecar's own pages (``own_prefix``) are
        reachable (they do their own checks): a variant inside the prefix counts as
        ``bypass``, one outside it does not.
        """
        variants = path_variants(target.path)
        if variants is None:
            return DENY_RULE
        return max((self._first_match(target, variant, subject) for variant in variants),
                   key=strictness)  # max keeps the first of equals

    def level_for(self, target: Target, subject: Subject) -> Level:
        """The level of the strictest matching rule (see ``rule_for``)."""
        return self.rule_for(target, subject).level

    def _first_match(self, target: Target, variant: Variant, subject: Subject) -> Rule:
        if self.own_prefix and _inside(self.own_prefix, variant):
            return BYPASS_RULE
        at = Target(target.host, variant.path, target.method)
        found = next((rule for rule in self.rules if rule_matches(rule, at, subject, variant.folded)),
                     Rule(self.default))
        if found.level is Level.DENY:
            return found
        return next((rule for rule in self.implicit
                     if rule_matches(rule, at, subject, variant.folded)), found)


def exact_path_rule(level: Level, path: str, host: str = "") -> Rule:
    """A rule for one path exactly (and with a trailing slash), on ``host`` when given."""
    trimmed = path.rstrip("/") or "/"
    pattern = re.compile("^" + re.escape(trimmed) + ("/?$" if trimmed != "/" else "$"))
    return Rule(level, hosts=(host.lower(),) if host else (), path_regex=pattern)


def code_is_recent(rule: Rule, code_at: int, now: float) -> bool:
    """Whether a code typed at ``code_at`` (0 = never in this pass) satisfies the rule's step-up."""
    return not rule.step_up or (code_at > 0 and now - code_at <= rule.step_up)
