"""What a configuration value may be: each kind converts a YAML value or says why it cannot.

A kind raises ValueError with a message that the reader completes with the value it got
(``must be an integer (got 'x')``), or ``Refused`` with a message that is whole as it is.
Each kind can also say, in words, what it accepts (``describe``), for the key table.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sidecar.core.apps import host_pattern, valid_name
from sidecar.core.forwarded import redirect_entry

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SHOWN_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


class Refused(ValueError):
    """A value that is wrong in a way its message says whole (the value is not echoed)."""


def duration_text(seconds: int) -> str:
    """``12h``, ``10m``, ``45s``, ``0``: how a duration reads in the docs."""
    if seconds == 0:
        return "0"
    for unit, size in _SHOWN_UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class Int:
    minimum: int
    maximum: int | None = None

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise ValueError(f"must be {self.describe()}")
        return value

    def describe(self) -> str:
        if self.maximum is None:
            return f">= {self.minimum}"
        return f"between {self.minimum} and {self.maximum}"


@dataclass(frozen=True, slots=True)
class Duration:
    """Seconds as an integer, or a string such as ``30s``, ``5m``, ``12h``, ``7d``."""

    minimum: int
    maximum: int | None = None

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("must be a duration such as 30s, 5m, 12h")
        if isinstance(value, int):
            seconds = value
        elif isinstance(value, str) and (match := _DURATION.match(value)):
            seconds = int(match.group(1)) * _UNITS[match.group(2)]
        else:
            raise ValueError("must be a duration such as 30s, 5m, 12h")
        if seconds < self.minimum:
            raise ValueError(f"must be at least {self.minimum} seconds")
        if self.maximum is not None and seconds > self.maximum:
            raise Refused(f"must be at most {self.maximum} seconds")
        return seconds

    def describe(self) -> str:
        top = f" to {duration_text(self.maximum)}" if self.maximum is not None else ""
        return f"a duration (30s, 5m, 12h, 7d) from {duration_text(self.minimum)}{top}"


@dataclass(frozen=True, slots=True)
class Bool:
    def __call__(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True, slots=True)
class Text:
    """A string; with ``pattern``, one that matches it whole (else ``message``)."""

    pattern: str | None = None
    message: str = ""

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise Refused(self.message)
        return value

    def describe(self) -> str:
        return "a string"


@dataclass(frozen=True, slots=True)
class Choice:
    choices: tuple[str, ...]

    def __call__(self, value: Any) -> str:
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return str(value)

    def describe(self) -> str:
        return "one of " + ", ".join(f"`{c}`" for c in self.choices)


@dataclass(frozen=True, slots=True)
class Texts:
    """A list of non-empty strings (a single string counts as a list of one).

    ``choices``: each must be one of them; ``pattern``: each must match it (else ``message``,
    where ``{item}`` names the offending entry).
    """

    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    message: str = ""

    def __call__(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError("must be a list of non-empty strings")
        for item in value:
            if self.choices is not None and item not in self.choices:
                raise Refused(f"{item!r} is not one of {', '.join(self.choices)}")
            if self.pattern is not None and not re.fullmatch(self.pattern, item):
                raise Refused(self.message.format(item=repr(item)))
        return tuple(value)

    def describe(self) -> str:
        if self.choices is not None:
            return "a list of " + ", ".join(f"`{c}`" for c in self.choices)
        return "a list of strings"


@dataclass(frozen=True, slots=True)
class Networks:
    def __call__(self, value: Any) -> tuple[Network, ...]:
        networks = []
        for item in Texts()(value):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return tuple(networks)

    def describe(self) -> str:
        return "a list of IP addresses or CIDR networks"


@dataclass(frozen=True, slots=True)
class RedirectHosts:
    """``redirects.allowed_hosts``: canonical ``host``, ``.domain`` or ``http(s)://host:port``."""

    def __call__(self, value: Any) -> tuple[str, ...]:
        return tuple(redirect_entry(entry) for entry in Texts()(value))

    def describe(self) -> str:
        return "a list of hosts, .domains or http(s) origins"


@dataclass(frozen=True, slots=True)
class Hosts:
    """The hosts an app answers: exact names or ``*.example.com``, normalized (no port)."""

    def __call__(self, value: Any) -> tuple[str, ...]:
        try:
            return tuple(dict.fromkeys(host_pattern(entry) for entry in Texts()(value)))
        except ValueError as exc:
            raise Refused(str(exc)) from None

    def describe(self) -> str:
        return "a list of host names or *.domains"


@dataclass(frozen=True, slots=True)
class Name:
    """An app name or users namespace."""

    def __call__(self, value: Any) -> str:
        text = Text()(value)
        if not valid_name(text):
            raise Refused(f"{text[:80]!r} must be letters, digits, _ . - (at most 63, starting "
                          "with a letter or digit)")
        return text

    def describe(self) -> str:
        return "a name (letters, digits, _ . -)"


@dataclass(frozen=True, slots=True)
class Url:
    def __call__(self, value: Any) -> str:
        text = Text()(value)
        if not re.match(r"^https?://[^/\s]+", text):
            raise ValueError("must be an absolute http:// or https:// URL")
        return text

    def describe(self) -> str:
        return "an http:// or https:// URL"


@dataclass(frozen=True, slots=True)
class Prefix:
    def __call__(self, value: Any) -> str:
        text = Text()(value)
        if not re.fullmatch(r"(/[A-Za-z0-9_.~-]+)+", text):
            raise ValueError("must be a path such as /_2fa (no trailing slash)")
        return text

    def describe(self) -> str:
        return "a path without a trailing slash"


@dataclass(frozen=True, slots=True)
class Regex:
    """A regular expression (compiled)."""

    def __call__(self, value: Any) -> re.Pattern[str]:
        try:
            return re.compile(Text()(value))
        except (re.error, ValueError) as exc:
            raise Refused(f"is not a valid regular expression: {exc}") from None

    def describe(self) -> str:
        return "a regular expression"


Kind = (Int | Duration | Bool | Text | Choice | Texts | Networks | RedirectHosts | Hosts | Name | Url
        | Prefix | Regex)
Convert = Callable[[Any], Any]
