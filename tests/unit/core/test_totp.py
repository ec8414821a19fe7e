"""TOTP against RFC 6238 Appendix B, and the one-use step matching."""

from __future__ import annotations

import base64

import pytest

from sidecar.core import totp

SEED_SHA1 = base64.b32encode(b"12345678901234567890").decode()
SEED_SHA256 = base64.b32encode(b"12345678901234567890123456789012").decode()
SEED_SHA512 = base64.b32encode(b"1234567890123456789012345678901234567890123456789012345678901234").decode()


@pytest.mark.parametrize(
    ("when", "sha1", "sha256", "sha512"),
    [
        (59, "94287082", "46119246", "90693936"),
        (1111111109, "07081804", "68084774", "25091201"),
        (1111111111, "14050471", "67062674", "99943326"),
        (1234567890, "89005924", "91819424", "93441116"),
        (2000000000, "69279037", "90698825", "38618901"),
        (20000000000, "65353130", "77737706", "47863826"),
    ],
)
def test_rfc6238_vectors(when: int, sha1: str, sha256: str, sha512: str) -> None:
    for seed, algorithm, expected in ((SEED_SHA1, "SHA1", sha1), (SEED_SHA256, "SHA256", sha256),
                                      (SEED_SHA512, "SHA512", sha512)):
        params = totp.TotpParams(digits=8, algorithm=algorithm)
        assert totp.code_at(seed, when, params) == expected
        assert totp.match_step(seed, expected, when, params) == when // 30


def test_new_secret_is_160_bits_base32() -> None:
    secret = totp.new_secret()
    assert len(secret) == 32 and len(base64.b32decode(secret)) == 20
    assert secret != totp.new_secret()


def test_skew_is_one_step_each_way() -> None:
    secret = totp.new_secret()
    now = 1_800_000_015
    step = now // 30
    for offset in (-1, 0, 1):
        code = totp.code_at(secret, now + 30 * offset)
        assert totp.match_step(secret, code, now) == step + offset
    for offset in (-3, -2, 2, 3):
        code = totp.code_at(secret, now + 30 * offset)
        if code not in {totp.code_at(secret, now + 30 * o) for o in (-1, 0, 1)}:
            assert totp.match_step(secret, code, now) is None


def test_used_step_is_refused() -> None:
    secret = totp.new_secret()
    now = 1_800_000_015
    code = totp.code_at(secret, now)
    step = totp.match_step(secret, code, now)
    assert step is not None
    assert totp.match_step(secret, code, now, after_step=step) is None
    assert totp.match_step(secret, code, now, after_step=step - 1) == step


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("123456", "123456"),
        ("123 456", "123456"),
        (" 123 456 ", "123456"),
        ("1 2 3 4 5 6", "123456"),
        ("000000", "000000"),
        ("123456" + " " * 26, "123456"),  # 32 characters
        ("12345", None),
        ("1234567", None),
        ("12345a", None),
        ("", None),
        (" ", None),
        ("1" * 100, None),
        ("123\x00456", None),
        ("123456" + " " * 27, None),  # 33 characters
        # only ASCII digits and U+0020
        ("123456\n", None),
        ("\t123456", None),
        ("123456\r\n", None),
        ("123\u00a0456", None),  # no-break space
        ("123\u2009456", None),  # thin space
        ("123\u3000456", None),  # ideographic space
        ("123-456", None),
        (" 123-456 ", None),
        ("１２３４５６", None),  # fullwidth digits
        ("١٢٣٤٥٦", None),  # Arabic-Indic digits
        ("۱۲۳۴۵۶", None),  # extended Arabic-Indic digits
        ("१२३४५६", None),  # Devanagari digits
        ("¹²³⁴⁵⁶", None),  # superscripts
        ("+123456", None),
        ("-123456", None),
        ("0x1234", None),
        ("12_3456", None),
        ("123.456", None),
        ("123456\x0b", None),
        ("\ufeff123456", None),
    ],
)
def test_parse_code(typed: str, expected: str | None) -> None:
    assert totp.parse_code(typed, 6) == expected


@pytest.mark.parametrize(("typed", "expected"), [("1234 5678", "12345678"), ("123456", None),
                                                  ("12345678\n", None)])
def test_parse_code_eight_digits(typed: str, expected: str | None) -> None:
    assert totp.parse_code(typed, 8) == expected


def test_match_step_refuses_a_right_code_with_junk() -> None:
    secret = totp.new_secret()
    now = 1_800_000_015
    code = totp.code_at(secret, now)
    assert totp.match_step(secret, f"{code[:3]} {code[3:]}", now) == now // 30
    for junk in (code + "\n", "\t" + code, f"{code[:3]}\u00a0{code[3:]}", f"{code[:3]}-{code[3:]}"):
        assert totp.match_step(secret, junk, now) is None


def test_manual_key_is_grouped_and_case_insensitive() -> None:
    assert totp.grouped("ABCDEFGHIJKLMNOP") == "ABCD EFGH IJKL MNOP"
    assert totp.normalize_secret("abcd efgh") == "ABCDEFGH"


def test_provisioning_uri_label() -> None:
    uri = totp.provisioning_uri("ABCD", "alice@example.com", "Demo App")
    assert uri == "otpauth://totp/Demo%20App:alice@example.com?secret=ABCD&issuer=Demo%20App"
