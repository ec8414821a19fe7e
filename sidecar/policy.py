"""The pure core: request facts in, decision out. No I/O, no framework.

``level_for`` finds the access level of a request from the ordered rules (first match wins),
on a normalized path so that ``/static/../admin`` cannot borrow the level of ``/static/``.
``decide`` turns the level and what is known about the user into allow / challenge /
enroll / deny.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
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


def normalize_path(raw: str) -> str | None:
    """The path as the app will see it: decoded, dot segments resolved, slashes collapsed.

    Decoding repeats until stable (``%252e`` is ``%2e`` is ``.``), backslashes count as
    slashes, and a path that still holds a NUL or does not start with ``/`` is refused (None).
    """
    path = raw.split("?", 1)[0].split("#", 1)[0]
    for _ in range(4):
        try:
            decoded = unquote(path, errors="strict") if "%" in path else path
        except UnicodeDecodeError:
            return None
        if decoded == path:
            break
        path = decoded
    else:
        return None
    if "\x00" in path or not path.startswith(("/", "\\")):
        return None
    path = path.replace("\\", "/")
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


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _path_matches(prefix: str, path: str) -> bool:
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix[:-1]
    return path == prefix or path.startswith(prefix + "/")


def rule_matches(rule: Rule, host: str, path: str, method: str, user: str | None,
                 groups: tuple[str, ...] = ()) -> bool:
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if rule.hosts and not any(_host_matches(h, hostname) for h in rule.hosts):
        return False
    if rule.methods and method not in rule.methods:
        return False
    if rule.users and (user is None or user not in rule.users):
        return False
    if rule.groups and (user is None or rule.groups.isdisjoint(groups)):
        return False
    if rule.paths and not any(_path_matches(p, path) for p in rule.paths):
        return False
    return not (rule.path_regex is not None and not rule.path_regex.search(path))


DENY_RULE = Rule("deny")
BYPASS_RULE = Rule("bypass")


def rule_for(rules: tuple[Rule, ...], default: str, host: str, raw_path: str, method: str,
             user: str | None, own_prefix: str = "", groups: tuple[str, ...] = ()) -> Rule:
    """The first matching rule (or one with the default level); an unnormalizable path is denied.

    The sidecar's own pages (``own_prefix``) are always reachable: they do their own checks.
    """
    path = normalize_path(raw_path)
    if path is None:
        return DENY_RULE
    if own_prefix and (path == own_prefix or path.startswith(own_prefix + "/")):
        return BYPASS_RULE
    host = host.lower()
    for rule in rules:
        if rule_matches(rule, host, path, method, user, groups):
            return rule
    return Rule(default)


def level_for(rules: tuple[Rule, ...], default: str, host: str, raw_path: str, method: str,
              user: str | None, own_prefix: str = "", groups: tuple[str, ...] = ()) -> str:
    """The level of the first matching rule (see ``rule_for``)."""
    return rule_for(rules, default, host, raw_path, method, user, own_prefix, groups).level


def code_is_recent(rule: Rule, code_at: int, now: float) -> bool:
    """Whether a code typed at ``code_at`` (0 = never in this pass) satisfies the rule's step-up."""
    return not rule.step_up or (code_at > 0 and now - code_at <= rule.step_up)
