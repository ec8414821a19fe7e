"""The pure core: request facts in, decision out. No I/O, no framework.

``level_for`` finds the access level of a request from the ordered rules (first match wins),
on a normalized path so that ``/static/../admin`` cannot borrow the level of ``/static/``.
A path that backends may route differently (``;parameters``, letter case) is matched in each
such variant, and the strictest level wins.
``decide`` turns the level and what is known about the user into allow / challenge /
enroll / deny.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from sidecar.config import Rule


class Outcome(enum.Enum):
    ALLOW = "allow"
    CHALLENGE = "challenge"  # enrolled, not yet verified in this app session
    OTP = "otp"  # an API client with a password: a code must come in the X-OTP header
    STEP_UP = "step_up"  # verified, but a rule wants a code typed more recently
    ENROLL = "enroll"  # 2FA required by a rule, user not enrolled
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Facts:
    level: str  # bypass | optional | required | deny
    user: str | None  # None: no primary session (anonymous)
    enrolled: bool = False
    verified: bool = False  # a valid 2FA cookie for this user and this app session
    credential: str = "session"  # session (cookies) | basic | bearer (the Authorization scheme)
    bearer_passes: bool = True  # api.bearer: pass
    code_is_recent: bool = True  # a code was typed within the matched rule's step_up window


def decide(facts: Facts) -> Outcome:
    """The verdict for one request."""
    if facts.level == "deny":
        return Outcome.DENY
    if facts.level == "bypass" or facts.user is None:
        return Outcome.ALLOW  # anonymous: the app shows its own login
    if facts.enrolled:
        if facts.verified:
            return Outcome.ALLOW if facts.code_is_recent else Outcome.STEP_UP
        if facts.credential == "bearer":
            return Outcome.ALLOW if facts.bearer_passes else Outcome.OTP
        return Outcome.OTP if facts.credential == "basic" else Outcome.CHALLENGE
    if facts.level == "required":
        return Outcome.ENROLL
    return Outcome.ALLOW


_SLASHES = re.compile(r"/{2,}")


class Level(enum.IntEnum):
    """The access levels, ranked: a higher value is stricter."""

    BYPASS = 0
    OPTIONAL = 1
    REQUIRED = 2
    DENY = 3


def strictness(rule: Rule) -> tuple[int, int, int]:
    """A sort key: the higher, the stricter the rule.

    The level comes first (``deny`` > ``required`` > ``optional`` > ``bypass``); between
    equal levels a rule with a step-up window is stricter, and a smaller window stricter still.
    """
    return Level[rule.level.upper()], 1 if rule.step_up else 0, -rule.step_up


def _decodings(raw: str) -> list[str] | None:
    """The path part of ``raw`` as sent and after each round of percent-decoding, until stable.

    An app decodes once (or not at all) and may leave the dot segments it then finds alone;
    the sidecar must know every one of these readings. None when a round cannot be decoded,
    or a reading holds a NUL or does not start with ``/``.
    """
    path = raw.split("?", 1)[0].split("#", 1)[0]
    found = [path]
    for _ in range(4):
        try:
            decoded = unquote(path, errors="strict") if "%" in path else path
        except UnicodeDecodeError:
            return None
        if decoded == path:
            break
        found.append(decoded)
        path = decoded
    else:
        return None
    if any("\x00" in p or not p.startswith(("/", "\\")) for p in found):
        return None
    return found


def _decode(raw: str) -> str | None:
    """The path part of ``raw``, percent-decoded until stable, backslashes made slashes."""
    found = _decodings(raw)
    return None if found is None else found[-1].replace("\\", "/")


def _resolve(path: str) -> str:
    """A decoded path with dot segments resolved and repeated slashes collapsed."""
    trailing = path.endswith("/") or path.endswith("/.") or path.endswith("/..")
    out: list[str] = []
    for segment in _SLASHES.sub("/", path).split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    result = "/" + "/".join(out)
    if trailing and result != "/":
        result += "/"
    return result


def strip_parameters(path: str) -> str:
    """``path`` with the ``;parameters`` of every segment removed (``/a;x/..;/b`` -> ``/a/../b``).

    Tomcat, Jetty and Spring do this before they resolve dot segments.
    """
    return "/".join(segment.split(";", 1)[0] for segment in path.split("/"))


def normalize_path(raw: str) -> str | None:
    """The path as the app will see it: decoded, dot segments resolved, slashes collapsed.

    Decoding repeats until stable (``%252e`` is ``%2e`` is ``.``), backslashes count as
    slashes, and a path that still holds a NUL or does not start with ``/`` is refused (None).
    """
    path = _decode(raw)
    return None if path is None else _resolve(path)


@dataclass(frozen=True, slots=True)
class Variant:
    """One path a backend may route ``raw_path`` to; ``folded``: compare it case-insensitively."""

    path: str
    folded: bool = False


@lru_cache(maxsize=4096)
def path_variants(raw_path: str) -> tuple[Variant, ...] | None:
    """The normalized path first, then the other paths common backends may route it to.

    Those are: every reading of the path between as-sent and fully decoded, with its dot
    segments resolved and as it is (an app that decodes ``%2e%2e`` once may route
    ``/admin/%2e%2e/x`` under ``/admin``), with ``;parameters`` stripped from each segment
    (Tomcat, Jetty, Spring: ``/login/..;/admin`` is ``/admin``), and the case-folded form of
    each (Express, ASP.NET). None when the path cannot be normalized.
    """
    readings = _decodings(raw_path)
    if readings is None:
        return None
    decoded = readings[-1].replace("\\", "/")
    found: dict[Variant, None] = {}
    for path in (decoded, strip_parameters(decoded)):
        found[Variant(_resolve(path))] = None
        found[Variant(_resolve(path.casefold()), folded=True)] = None
    for reading in readings:
        for path in (reading, strip_parameters(reading), reading.replace("\\", "/")):
            for candidate in (path, _resolve(path.replace("\\", "/"))):
                found.setdefault(Variant(candidate), None)
                found.setdefault(Variant(candidate.casefold(), folded=True), None)
    return tuple(found)


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


def rule_matches(rule: Rule, host: str, path: str, method: str, user: str | None,
                 groups: tuple[str, ...] = (), folded: bool = False) -> bool:
    """Whether every condition of ``rule`` holds; the host is compared without port and trailing dot.

    ``folded``: ``path`` is a case-folded variant, so rule paths are case-folded too and
    ``path_regex`` is searched ignoring case.
    """
    hostname = _hostname(host)
    if rule.hosts and not any(_host_matches(h, hostname) for h in rule.hosts):
        return False
    if rule.methods and method not in rule.methods:
        return False
    if rule.users and (user is None or user not in rule.users):
        return False
    if rule.groups and (user is None or rule.groups.isdisjoint(groups)):
        return False
    if rule.paths and not any(_path_matches(p.casefold() if folded else p, path) for p in rule.paths):
        return False
    if rule.path_regex is None:
        return True
    regex = _ignoring_case(rule.path_regex) if folded else rule.path_regex
    return regex.search(path) is not None


DENY_RULE = Rule("deny")
BYPASS_RULE = Rule("bypass")


def _inside(prefix: str, variant: Variant) -> bool:
    prefix = prefix.casefold() if variant.folded else prefix
    return variant.path == prefix or variant.path.startswith(prefix + "/")


def rule_for(rules: tuple[Rule, ...], default: str, host: str, raw_path: str, method: str,
             user: str | None, own_prefix: str = "", groups: tuple[str, ...] = ()) -> Rule:
    """The strictest of the rules that the path and its variants (``path_variants``) match.

    For each variant the first matching rule counts (or one with the default level); the
    strictest of those wins (see ``strictness``), the plain path's on a tie. An unnormalizable
    path is denied. The sidecar's own pages (``own_prefix``) are reachable (they do their own
    checks): a variant inside the prefix counts as ``bypass``, one outside it does not.
    """
    variants = path_variants(raw_path)
    if variants is None:
        return DENY_RULE
    return max((_first_match(rules, default, host, variant, method, user, own_prefix, groups)
                for variant in variants), key=strictness)  # max keeps the first of equals


def _first_match(rules: tuple[Rule, ...], default: str, host: str, variant: Variant, method: str,
                 user: str | None, own_prefix: str, groups: tuple[str, ...]) -> Rule:
    if own_prefix and _inside(own_prefix, variant):
        return BYPASS_RULE
    for rule in rules:
        if rule_matches(rule, host, variant.path, method, user, groups, variant.folded):
            return rule
    return Rule(default)


def level_for(rules: tuple[Rule, ...], default: str, host: str, raw_path: str, method: str,
              user: str | None, own_prefix: str = "", groups: tuple[str, ...] = ()) -> str:
    """The level of the strictest matching rule (see ``rule_for``)."""
    return rule_for(rules, default, host, raw_path, method, user, own_prefix, groups).level


def code_is_recent(rule: Rule, code_at: int, now: float) -> bool:
    """Whether a code typed at ``code_at`` (0 = never in this pass) satisfies the rule's step-up."""
    return not rule.step_up or (code_at > 0 and now - code_at <= rule.step_up)
