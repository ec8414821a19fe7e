"""Paths as the app behind the proxy will see them, and the other ways backends route them.

``normalize_path`` decodes (until stable), resolves dot segments and collapses slashes, so
that ``/static/../admin`` cannot borrow the level of ``/static/``. ``path_variants`` adds what
common backends may route a path to besides: every partial decoding with its dot segments
left alone or resolved, ``;parameters`` stripped (Tomcat, Jetty, Spring) and the case-folded
forms (Express, ASP.NET).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

_SLASHES = re.compile(r"/{2,}")


def _decodings(raw: str) -> list[str] | None:
    """The path part of ``raw`` as sent and after each round of percent-decoding, until stable.

    An app decodes once (or not at all) and may leave the dot segments it then finds alone;
    the sidecar must know every one of these readings. None when a round cannot be decoded,
    or a reading holds a NUL or does not start with ``/``.
    """
    path = raw.split("?", 1)[0].split("#", 1)[0]
    found = [path]
    for _ in range(4):
        try:
            decoded = unquote(path, errors="strict") if "%" in path else path
        except UnicodeDecodeError:
            return None
        if decoded == path:
            break
        found.append(decoded)
        path = decoded
    else:
        return None
    if any("\x00" in p or not p.startswith(("/", "\\")) for p in found):
        return None
    return found


def _decode(raw: str) -> str | None:
    """The path part of ``raw``, percent-decoded until stable, backslashes made slashes."""
    found = _decodings(raw)
    return None if found is None else found[-1].replace("\\", "/")


def _resolve(path: str) -> str:
    """A decoded path with dot segments resolved and repeated slashes collapsed."""
    trailing = path.endswith("/") or path.endswith("/.") or path.endswith("/..")
    out: list[str] = []
    for segment in _SLASHES.sub("/", path).split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    result = "/" + "/".join(out)
    if trailing and result != "/":
        result += "/"
    return result


def strip_parameters(path: str) -> str:
    """``path`` with the ``;parameters`` of every segment removed (``/a;x/..;/b`` -> ``/a/../b``).

    Tomcat, Jetty and Spring do this before they resolve dot segments.
    """
    return "/".join(segment.split(";", 1)[0] for segment in path.split("/"))


def normalize_path(raw: str) -> str | None:
    """The path as the app will see it: decoded, dot segments resolved, slashes collapsed.

    Decoding repeats until stable (``%252e`` is ``%2e`` is ``.``), backslashes count as
    slashes, and a path that still holds a NUL or does not start with ``/`` is refused (None).
    """
    path = _decode(raw)
    return None if path is None else _resolve(path)


@dataclass(frozen=True, slots=True)
class Variant:
    """One path a backend may route ``raw_path`` to; ``folded``: compare it case-insensitively."""

    path: str
    folded: bool = False


@lru_cache(maxsize=4096)
def path_variants(raw_path: str) -> tuple[Variant, ...] | None:
    """The normalized path first, then the other paths common backends may route it to.

    Those are: every reading of the path between as-sent and fully decoded, with its dot
    segments resolved and as it is (an app that decodes ``%2e%2e`` once may route
    ``/admin/%2e%2e/x`` under ``/admin``), with ``;parameters`` stripped from each segment
    (Tomcat, Jetty, Spring: ``/login/..;/admin`` is ``/admin``), and the case-folded form of
    each (Express, ASP.NET). None when the path cannot be normalized.
    """
    readings = _decodings(raw_path)
    if readings is None:
        return None
    decoded = readings[-1].replace("\\", "/")
    found: dict[Variant, None] = {}
    for path in (decoded, strip_parameters(decoded)):
        found[Variant(_resolve(path))] = None
        found[Variant(_resolve(path.casefold()), folded=True)] = None
    for reading in readings:
        for path in (reading, strip_parameters(reading), reading.replace("\\", "/")):
            for candidate in (path, _resolve(path.replace("\\", "/"))):
                found.setdefault(Variant(candidate), None)
                found.setdefault(Variant(candidate.casefold(), folded=True), None)
    return tuple(found)
