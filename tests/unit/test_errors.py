"""The exception family (sidecar.errors): who is what, and what each carries."""

from __future__ import annotations

import pytest

from sidecar.errors import (
    Ambiguous,
    BadForwardedRequest,
    ConfigError,
    Problem,
    SecretUnreadable,
    SidecarError,
    StorageUnavailable,
    Unavailable,
    UpstreamUnavailable,
)


@pytest.mark.parametrize("error", [StorageUnavailable, UpstreamUnavailable, SecretUnreadable])
def test_every_reason_to_answer_503_is_unavailable(error: type[Unavailable]) -> None:
    assert issubclass(error, Unavailable) and issubclass(error, SidecarError)


@pytest.mark.parametrize("error", [ConfigError, BadForwardedRequest, Ambiguous])
def test_the_others_are_not_unavailable(error: type[SidecarError]) -> None:
    assert issubclass(error, SidecarError) and not issubclass(error, Unavailable)


def test_config_error_carries_every_problem_with_its_key() -> None:
    error = ConfigError([Problem("cookie.max_age", "must be at least 60 seconds"),
                         Problem("rules[0].level", "is required")])
    assert [p.key for p in error.problems] == ["cookie.max_age", "rules[0].level"]
    assert error.lines == ["cookie.max_age: must be at least 60 seconds", "rules[0].level: is required"]
    assert str(error) == "cookie.max_age: must be at least 60 seconds; rules[0].level: is required"


def test_ambiguous_says_why() -> None:
    error = Ambiguous("header Remote-User is given 2 times")
    assert error.reason == "header Remote-User is given 2 times"
    assert isinstance(error, ValueError)  # callers that parse values may catch it as one
