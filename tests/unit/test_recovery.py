from __future__ import annotations

import pytest

from sidecar import recovery


def test_twenty_distinct_codes() -> None:
    codes = recovery.new_codes()
    assert len(codes) == 20 and len(set(codes)) == 20
    assert all(len(c) == 11 and c[5] == "-" for c in codes)


@pytest.mark.parametrize("typed", ["abcde-fghjk", "ABCDE-FGHJK", "abcdefghjk", "ABCDEFGHJK",
                                   " abcde fghjk ", "aBcDe-FgHjK"])
def test_normalize_accepts_any_case_and_dash(typed: str) -> None:
    assert recovery.normalize(typed) == "abcdefghjk"


@pytest.mark.parametrize("typed", ["", "abcde", "abcde-fghjkk", "abcde-fghj1", "abcde_fghjk",
                                   "x" * 200, "abcde\x00fghjk"])
def test_normalize_refuses_junk(typed: str) -> None:
    assert recovery.normalize(typed) is None


def test_hash_is_keyed_and_bound_to_user() -> None:
    a = recovery.code_hash("key-1", "alice", "abcdefghjk")
    assert a != recovery.code_hash("key-2", "alice", "abcdefghjk")
    assert a != recovery.code_hash("key-1", "bob", "abcdefghjk")
    assert "abcdefghjk" not in a
