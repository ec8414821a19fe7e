"""Unsafe requests by app session (``sidecar.core.logins``): what the caches ask before they
serve or keep an answer."""

from __future__ import annotations

from sidecar.core import logins as module
from sidecar.core.logins import Logins, session_tokens


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tokens_are_the_session_cookies_and_the_authorization() -> None:
    assert session_tokens("s=1\nt=2", "") == ("s=1", "t=2")
    assert session_tokens("", "Basic YTpi") == ("\x00authorization Basic YTpi",
                                                 "\x00authorization basic YTpi")
    assert session_tokens("", "") == ()


def test_a_session_spelled_another_way_shares_a_token() -> None:
    """As PHP, Rack or Express read cookies: percent-decoded values, folded names, quotes."""
    plain = set(session_tokens("demo_session=abc", ""))
    for spelled in ("demo_session=%61%62%63", "demo.session=abc", "Demo_Session=abc",
                    'demo_session="abc"'):
        assert plain & set(session_tokens(spelled, "")), spelled
    assert not plain & set(session_tokens("demo_session=abd", ""))
    assert set(session_tokens("", "Bearer X")) & set(session_tokens("", "bearer  X"))


def test_an_answer_holds_until_one_of_its_tokens_is_marked() -> None:
    logins = Logins(Ticks())
    erin = session_tokens("s=erin-session", "")
    since = logins.seq
    assert logins.keeps(erin, since)
    logins.mark(session_tokens("s=other-session", ""))  # another session: nothing of erin's
    assert logins.keeps(erin, since)
    logins.mark(session_tokens("s=erin-session\nx=1", ""))  # erin's session, reworded
    assert not logins.keeps(erin, since)
    assert logins.keeps(erin, logins.seq)  # worked out after the mark: holds again
    logins.mark(())  # no session: marks nothing
    assert logins.keeps(erin, logins.seq)


def test_a_quiet_window_keeps_nothing_for_a_while_after_a_mark() -> None:
    ticks = Ticks()
    logins = Logins(ticks)
    erin = ("s=erin",)
    logins.mark(erin)
    since = logins.seq
    assert logins.keeps(erin, since) and not logins.keeps(erin, since, quiet=5)
    ticks.now += 5
    assert logins.keeps(erin, since, quiet=5)


def test_forgotten_marks_raise_the_floor() -> None:
    ticks = Ticks()
    logins = Logins(ticks)
    old = logins.seq
    logins.mark(("s=a",))
    ticks.now += module.MARKS_KEPT_SECONDS
    logins.mark(("s=b",))  # the mark of s=a is forgotten: answers from before it end too
    assert len(logins) == 1 and logins.floor == 1
    assert not logins.keeps(("s=a",), old)
    assert not logins.keeps(("s=unrelated",), old)  # nobody can tell: treated as marked
    assert logins.keeps(("s=a",), logins.seq)


def test_marks_are_bounded() -> None:
    logins = Logins(Ticks())
    for n in range(module.MARKS_LIMIT + 10):
        logins.mark((f"s={n}",))
    assert len(logins) == module.MARKS_LIMIT and logins.floor == 10
