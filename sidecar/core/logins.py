"""Unsafe requests by app session: what keeps the caches from serving an answer a login changed.

An app may keep its session id across a login: the session cookie stays, the user it names
changes. Every request with an unsafe method (a login is a POST) is *marked* under its
session's tokens: each of the app's session cookies (``name=value``, as the one reading found
them) and its ``Authorization`` header. A cached answer (who-am-I, forward-auth) is served
only while none of its tokens was marked since it was worked out, and an answer worked out
while one was marked is not kept. Tokens are the cookies themselves, not the Cookie header's
bytes, so a login sent with a reworded header (another order, one more cookie, no space after
``;``) marks the very session the earlier answers were cached for. One ``Logins`` serves every
app of a sidecar, so apps that share a session cookie share its marks.

Marks are kept ``MARKS_KEPT_SECONDS`` (and at most ``MARKS_LIMIT``); an answer worked out
before the newest mark forgotten (``floor``) is treated as marked: never served, never kept.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from urllib.parse import unquote

from sidecar.core.clock import Monotonic
from sidecar.core.clock import monotonic as steady
from sidecar.core.request import fold_cookie_name

MARKS_KEPT_SECONDS = 600.0  # longer than any cache_seconds (300 at most) with its timeouts
MARKS_LIMIT = 50_000
AUTHORIZATION = "\x00authorization "  # no cookie line starts with NUL

Tokens = tuple[str, ...]


@functools.lru_cache(maxsize=4096)  # asked by the who-am-I cache and the answer cache alike
def session_tokens(session_key: str, authorization: str) -> Tokens:
    """The tokens of a session: its cookies (``Reading.session_key``'s ``name=value`` lines) and
    its Authorization, each as sent and as the most lenient app reads it (the name folded as
    PHP and ASP.NET do, the value unquoted and percent-decoded as PHP, Rack and Express do), so
    a login that spells the session another way still marks the session the answers hold."""
    tokens: dict[str, None] = {}
    for line in session_key.split("\n") if session_key else ():
        name, _, value = line.partition("=")
        unquoted = value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
        for each_name in (name, fold_cookie_name(name)):
            for each_value in (value, unquoted, unquote(unquoted)):
                tokens[f"{each_name}={each_value}"] = None
    if authorization:
        scheme, _, rest = authorization.strip().partition(" ")
        tokens[AUTHORIZATION + authorization] = None
        tokens[AUTHORIZATION + scheme.lower() + " " + rest.strip()] = None
    return tuple(tokens)


class Logins:
    def __init__(self, monotonic: Monotonic = steady) -> None:
        self.monotonic = monotonic
        self.seq = 0  # unsafe requests marked so far
        self.floor = 0  # the newest mark forgotten
        self._marks: OrderedDict[str, tuple[int, float]] = OrderedDict()  # token → (seq, when)

    def __len__(self) -> int:
        return len(self._marks)

    def mark(self, tokens: Tokens) -> None:
        """An unsafe request of the session ``tokens``: it may log someone else into it."""
        if not tokens:
            return
        self.seq += 1
        now = self.monotonic()
        marks = self._marks
        for token in tokens:
            marks[token] = (self.seq, now)
            marks.move_to_end(token)
        while marks:
            first = next(iter(marks))
            seq, when = marks[first]
            if len(marks) <= MARKS_LIMIT and now - when < MARKS_KEPT_SECONDS:
                break
            del marks[first]
            self.floor = max(self.floor, seq)

    def keeps(self, tokens: Tokens, since: int, quiet: float = 0.0) -> bool:
        """Whether an answer for ``tokens`` worked out from mark ``since`` on still holds: none
        of its tokens was marked after ``since`` (nor, with ``quiet``, in that many seconds)."""
        if since < self.floor:
            return False
        if since == self.seq and not quiet:  # nothing marked since: the usual case, no lookup
            return True
        now = self.monotonic()
        for token in tokens:
            mark = self._marks.get(token)
            if mark is not None and (mark[0] > since or now - mark[1] < quiet):
                return False
        return True
