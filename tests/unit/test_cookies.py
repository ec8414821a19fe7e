"""The 2FA cookie: signed, rotatable, bound to the session; junk means "not verified"."""

from __future__ import annotations

import pytest

from sidecar.cookies import Pass, PassCodec, csrf_token, csrf_valid, fingerprint, pass_is_fresh

OLD, NEW = "o" * 40, "n" * 40
ITEM = Pass("alice", "fp", 1000, 1000, 3, "alice@example.com", "Alice")


def test_round_trip() -> None:
    codec = PassCodec((NEW,))
    assert codec.loads(codec.dumps(ITEM)) == ITEM


def test_rotation_keeps_old_cookies_valid() -> None:
    old_value = PassCodec((OLD,)).dumps(ITEM)
    rotated = PassCodec((OLD, NEW))
    assert rotated.loads(old_value) == ITEM
    assert PassCodec((NEW,)).loads(old_value) is None
    assert PassCodec((NEW,)).loads(rotated.dumps(ITEM)) == ITEM  # the newest key signs


@pytest.mark.parametrize("value", ["", "garbage", "a.b.c", "x" * 5000, "\x00", "é", "[]",
                                   "WyJhbGljZSJd.bad"])
def test_junk_is_not_verified(value: str) -> None:
    assert PassCodec((NEW,)).loads(value) is None


def test_tampered_payload_is_refused() -> None:
    codec = PassCodec((NEW,))
    value = codec.dumps(ITEM)
    payload, sig = value.rsplit(".", 1)
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    assert codec.loads(f"{flipped}.{sig}") is None
    assert codec.loads(value[:-1] + ("A" if value[-1] != "A" else "B")) is None


def test_freshness() -> None:
    assert pass_is_fresh(ITEM, 1000 + 3600, max_age=3600, idle_timeout=0)
    assert not pass_is_fresh(ITEM, 1000 + 3601, max_age=3600, idle_timeout=0)
    assert not pass_is_fresh(ITEM, 1000 + 601, max_age=3600, idle_timeout=600)
    assert not pass_is_fresh(ITEM, 1000 - 3600, max_age=3600, idle_timeout=0)  # from the future


def test_fingerprint_is_keyed_and_distinct() -> None:
    assert fingerprint("k1", "s=1") != fingerprint("k1", "s=2")
    assert fingerprint("k1", "s=1") != fingerprint("k2", "s=1")
    assert "s=1" not in fingerprint("k1", "s=1")


def test_csrf_bound_to_user_and_session() -> None:
    token = csrf_token((OLD, NEW), "alice", "fp1")
    assert csrf_valid((OLD, NEW), "alice", "fp1", token)
    assert not csrf_valid((OLD, NEW), "bob", "fp1", token)
    assert not csrf_valid((OLD, NEW), "alice", "fp2", token)
    assert not csrf_valid((OLD, NEW), "alice", "fp1", "")
    assert not csrf_valid((OLD, NEW), "alice", "fp1", token[:-1])
