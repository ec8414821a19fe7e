from __future__ import annotations

import pytest

from sidecar.core import recovery


def test_twenty_distinct_codes() -> None:
    codes = recovery.new_codes()
    assert len(codes) == 20 and len(set(codes)) == 20
    assert all(len(c) == 11 and c[5] == "-" for c in codes)


@pytest.mark.parametrize("typed", ["abcde-fghjk", "ABCDE-FGHJK", "abcdefghjk", "ABCDEFGHJK",
                                   " abcde fghjk ", "aBcDe-FgHjK", "abc-de-fg-hjk", "abcde - fghjk",
                                   "abcde-fghjk" + " " * 21])  # 32 characters
def test_normalize_accepts_any_case_and_dash(typed: str) -> None:
    assert recovery.normalize(typed) == "abcdefghjk"


@pytest.mark.parametrize("typed", [
    "", "abcde", "abcde-fghjkk", "abcde-fghj1", "abcde_fghjk", "x" * 200, "abcde\x00fghjk",
    "abcde-fghjk" + " " * 22,  # 33 characters
    "abcde-fghjk\n", "\tabcde-fghjk", "abcde-fghjk\r\n", "abcde\u00a0fghjk", "abcde\u2010fghjk",
    "abcde\u2013fghjk", "ａｂｃｄｅ-ｆｇｈｊｋ", "abcde-fghj\u212a",  # fullwidth; Kelvin sign (lower() is k)
    "abcde-fghiJ", "ABCDE-FGHJL", "abcde-fghjo", "abcde+fghjk", "abcde.fghjk", "abcde/fghjk",
    "-" * 20, " " * 20,
])
def test_normalize_refuses_junk(typed: str) -> None:
    assert recovery.normalize(typed) is None


def test_hash_is_keyed_and_bound_to_user() -> None:
    a = recovery.code_hash("key-1", "alice", "abcdefghjk")
    assert a != recovery.code_hash("key-2", "alice", "abcdefghjk")
    assert a != recovery.code_hash("key-1", "bob", "abcdefghjk")
    assert "abcdefghjk" not in a
