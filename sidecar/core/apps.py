"""Several apps behind one sidecar: which app a host belongs to, and whose users are whose.

Pure functions, used by the config (to check ``hosts`` and ``users_namespace``), the wiring
(to choose the app of a request from its host, the one place that chooses) and the command
line (``--app``):

* ``host_pattern`` checks and normalizes one ``hosts`` entry: an exact host name or
  ``*.example.com``, any case, without port, trailing dot dropped (as the door reads hosts);
* ``choose_app`` finds the app of a host: an exact name beats a wildcard, a longer wildcard
  beats a shorter one; a host no app claims goes to the catch-all app (one without ``hosts``)
  or to nobody (the caller refuses it: fail closed);
* ``storage_key`` maps (namespace, user) to the key the storage holds, the one mapping there
  is: the top-level app's namespace (``default``) keeps raw user ids, so existing databases
  keep working; any other namespace is written ``<namespace>\\x1f<user>``. The separator is a
  control character that no user id can hold (the who-am-I and header resolvers refuse every
  control character), so a namespaced key never equals a raw user id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The namespace (and the name) of the top-level app: its users are stored under their raw id.
DEFAULT_APP = "default"
SEPARATOR = "\x1f"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


def valid_name(name: str) -> bool:
    """An app name or namespace: letters, digits, ``_ . -``, at most 63, starting alphanumeric."""
    return _NAME.fullmatch(name) is not None


def host_pattern(entry: str) -> str:
    """``entry`` as matched: lower case, no trailing dot; ValueError when it is no host name
    (``app.example.com``) or ``*.`` wildcard (``*.example.com``) without a port."""
    text = entry.strip().lower()
    text = text[:-1] if text.endswith(".") else text
    name = text[2:] if text.startswith("*.") else text
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{entry!r} is not a host name or *.domain (no port, no path)")
    return text


def hostname_of(host: str) -> str:
    """``host`` (as the door reads it: lower case, maybe a port) without port or trailing dot."""
    if not host.endswith("]"):
        host = host.rsplit(":", 1)[0]
    return host.lower().rstrip(".")


def pattern_matches(pattern: str, hostname: str) -> bool:
    """``*.example.com`` matches any name below ``example.com`` (not itself); else exactly."""
    if pattern.startswith("*."):
        return hostname.endswith(pattern[1:]) and len(hostname) > len(pattern) - 1
    return hostname == pattern


def choose_app(apps: Iterable[tuple[str, tuple[str, ...]]], host: str) -> str | None:
    """The name of the app whose ``hosts`` claim ``host``; else the first app without
    ``hosts`` (the catch-all); else None. Exact names beat wildcards, longer wildcards
    beat shorter ones."""
    hostname = hostname_of(host)
    best: tuple[int, str] | None = None
    catch_all: str | None = None
    for name, patterns in apps:
        if not patterns:
            catch_all = catch_all or name
        for pattern in patterns:
            if pattern_matches(pattern, hostname):
                rank = 10_000 if not pattern.startswith("*.") else len(pattern)
                if best is None or rank > best[0]:
                    best = (rank, name)
    return best[1] if best is not None else catch_all


def storage_key(namespace: str, user: str) -> str:
    """The storage key of ``user`` in ``namespace`` (raw in the default namespace)."""
    return user if namespace == DEFAULT_APP else f"{namespace}{SEPARATOR}{user}"


def split_key(key: str) -> tuple[str, str]:
    """(namespace, user) of a storage key: the inverse of ``storage_key``."""
    namespace, sep, user = key.partition(SEPARATOR)
    return (namespace, user) if sep else (DEFAULT_APP, key)


def in_namespace(key: str, namespace: str) -> bool:
    return split_key(key)[0] == namespace


def valid_user(user: str) -> bool:
    """A user id some app could name: not empty, no control character (the separator is one)."""
    return bool(user) and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in user)
