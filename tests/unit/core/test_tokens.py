"""Signed values (sidecar.core.tokens): one signer, a namespace per use, rotatable keys;
junk means "not verified"."""

from __future__ import annotations

import pytest

from sidecar.core.tokens import (
    CSRF,
    DEVICE,
    PASS,
    RESET_GRANT,
    Pass,
    PassCodec,
    Signer,
    fingerprint,
    pass_is_fresh,
)

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
    csrf = Signer((OLD, NEW), CSRF)
    token = csrf.mac("alice", "fp1")
    assert csrf.mac_valid(token, "alice", "fp1")
    assert not csrf.mac_valid(token, "bob", "fp1")
    assert not csrf.mac_valid(token, "alice", "fp2")
    assert not csrf.mac_valid("", "alice", "fp1")
    assert not csrf.mac_valid(token[:-1], "alice", "fp1")
    assert not Signer((OLD, NEW), "another.use").mac_valid(token, "alice", "fp1")


def test_csrf_survives_rotation() -> None:
    token = Signer((OLD,), CSRF).mac("alice", "fp1")
    assert Signer((OLD, NEW), CSRF).mac_valid(token, "alice", "fp1")
    assert not Signer((NEW,), CSRF).mac_valid(token, "alice", "fp1")


@pytest.mark.parametrize("namespace", [DEVICE, RESET_GRANT, CSRF, "totp-sidecar.other"])
def test_a_value_signed_for_one_use_never_passes_for_another(namespace: str) -> None:
    value = Signer((NEW,), namespace).dumps("alice", "fp", 1000, 1000, 3, "", "", [], 0)
    assert Signer((NEW,), namespace).loads(value, str, str, int, int, int, str, str, list, int)
    assert PassCodec((NEW,)).loads(value) is None
    assert Signer((NEW,), PASS).loads(value, str, str, int, int, int, str, str, list, int) is None


@pytest.mark.parametrize(
    ("fields", "shape", "ok"),
    [
        (("g", "alice", True, 5), (str, str, bool, int), True),
        (("g", "alice", 1, 5), (str, str, bool, int), False),  # an int is no bool
        (("g", "alice", True, True), (str, str, bool, int), False),  # a bool is no int
        (("g", "alice", True), (str, str, bool, int), False),  # too few
        (("g", ["a", 1]), (str, list), False),  # lists hold strings
        (("g", ["a", "b"]), (str, list), True),
    ],
)
def test_loads_checks_the_shape(fields: tuple[object, ...], shape: tuple[type, ...], ok: bool) -> None:
    signer = Signer((NEW,), RESET_GRANT)
    loaded = signer.loads(signer.dumps(*fields), *shape)
    assert (loaded == fields) if ok else loaded is None


def test_a_signer_needs_a_key() -> None:
    with pytest.raises(ValueError, match="signing key"):
        Signer((), CSRF)
