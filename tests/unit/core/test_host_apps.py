"""Which app a host belongs to, and the storage key of a user in an app's namespace."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.core.apps import (
    DEFAULT_APP,
    SEPARATOR,
    choose_app,
    host_pattern,
    in_namespace,
    split_key,
    storage_key,
    valid_name,
    valid_user,
)

APPS = (("default", ()), ("wiki", ("wiki.example.com",)), ("any", ("*.example.com",)),
        ("deep", ("*.x.example.com",)), ("exact", ("a.x.example.com",)))


@pytest.mark.parametrize(("entry", "pattern"), [
    ("App.Example.COM", "app.example.com"), ("app.example.com.", "app.example.com"),
    ("*.Example.com", "*.example.com"), (" intranet ", "intranet"), ("127.0.0.1", "127.0.0.1"),
])
def test_host_entries_are_normalized_as_the_door_reads_hosts(entry: str, pattern: str) -> None:
    assert host_pattern(entry) == pattern


@pytest.mark.parametrize("entry", ["", "*", "*.", "a.*.com", "app.example.com:443", "https://a.b",
                                   "a/b", "a..b", "-a.b", "a b", "*.*.b", "ä.example.com"])
def test_bad_host_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        host_pattern(entry)


@pytest.mark.parametrize(("host", "app"), [
    ("wiki.example.com", "wiki"), ("WIKI.example.com.", "wiki"), ("wiki.example.com:8443", "wiki"),
    ("blog.example.com", "any"), ("a.b.example.com", "any"), ("example.com", "default"),
    ("b.x.example.com", "deep"), ("a.x.example.com", "exact"), ("other.test", "default"),
    ("[::1]:8080", "default"), ("evil-example.com", "default"), ("wiki.example.com.evil", "default"),
])
def test_exact_names_beat_wildcards_and_longer_wildcards_beat_shorter(host: str, app: str) -> None:
    assert choose_app(APPS, host) == app


def test_without_a_catch_all_an_unclaimed_host_has_no_app() -> None:
    apps = (("default", ("a.test",)), ("b", ("b.test",)))
    assert choose_app(apps, "a.test") == "default"
    assert choose_app(apps, "c.test") is None
    assert choose_app(apps, "sub.a.test") is None


def test_the_default_namespace_keeps_raw_user_ids() -> None:
    assert storage_key(DEFAULT_APP, "alice") == "alice"
    assert split_key("alice") == (DEFAULT_APP, "alice")
    assert storage_key("wiki", "alice") == f"wiki{SEPARATOR}alice"
    assert split_key(storage_key("wiki", "alice")) == ("wiki", "alice")
    assert in_namespace("alice", DEFAULT_APP) and not in_namespace("alice", "wiki")
    assert in_namespace(storage_key("wiki", "alice"), "wiki")


@given(st.text(min_size=1), st.text(min_size=1))
def test_a_namespaced_key_is_never_a_user_id_and_never_another_namespaces(user: str,
                                                                          other: str) -> None:
    key = storage_key("wiki", user)
    if valid_user(user):
        assert split_key(key) == ("wiki", user)
    if valid_user(other):  # no user id any resolver accepts can equal a namespaced key
        assert key != other and storage_key("blog", other) != key
        assert storage_key(DEFAULT_APP, other) != key


def test_names() -> None:
    assert valid_name("wiki") and valid_name("a.b-c_1")
    assert not valid_name("") and not valid_name("-x") and not valid_name("a b")
    assert not valid_name(f"a{SEPARATOR}b") and not valid_name("x" * 64)
    assert not valid_user("") and not valid_user(f"a{SEPARATOR}b") and valid_user("alice")
