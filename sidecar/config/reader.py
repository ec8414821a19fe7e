"""Reading a parsed YAML mapping by the schema, collecting every problem with its key path.

``Reader.value`` reads one key as its schema entry says: absent, it takes the schema's
default; of the wrong kind, it is a problem (``cookie.max_age: must be a duration …``) and the
default stands in, so reading goes on and every problem is reported at once. Unknown keys are
problems too, since a typo must never be ignored. ``Reader.secret`` is the one helper for a
secret that may come from ``key``, ``key_file`` or an environment variable.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from sidecar.config.schema import KEYS, Key, names_under
from sidecar.config.values import Refused
from sidecar.errors import Problem


class Reader:
    """Walks a parsed YAML mapping by the schema, converting values and collecting problems."""

    def __init__(self, environ: dict[str, str], base_dir: Path, at: str = "", scope: str = "") -> None:
        self.problems: list[Problem] = []
        self.environ = environ
        self.base_dir = base_dir
        self.at = at  # how problems name where this reader reads (``apps[1].``)
        self.scope = scope  # the schema section it reads as the top level (``apps[]``)
        self.top: dict[str, Any] = {}  # the whole document (for an app's inherited settings)

    def within(self, at: str, scope: str) -> Reader:
        """A reader of a nested mapping read like the top level (an entry of ``apps``), whose
        problems are named ``<at><key>`` and collected with this reader's."""
        inner = Reader(self.environ, self.base_dir, self.at + at, scope)
        inner.problems = self.problems
        return inner

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.at + key, message))

    def section(self, data: dict[str, Any], path: str) -> dict[str, Any]:
        """The mapping at ``path`` (its name looked up in ``data``); its unknown keys are problems."""
        value = data.get(path.rpartition(".")[2], {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        self.unknown(value, path)
        return value

    def unknown(self, data: dict[str, Any], path: str, at: str | None = None) -> None:
        """A problem for each key of ``data`` the schema does not know under ``path``."""
        allowed = names_under(f"{self.scope}.{path}".strip(".") if self.scope else path)
        prefix = at if at is not None else (f"{path}." if path else "")
        for key in data:
            if key not in allowed:
                near = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
                hint = f"did you mean {near[0]!r}? " if near else ""
                self.problem(f"{prefix}{key}",
                             f"unknown key ({hint}known keys: {', '.join(sorted(allowed))})")

    def value(self, data: dict[str, Any], path: str, at: str | None = None) -> Any:
        """The key at ``path`` read from ``data`` (its section), or its default when absent.

        ``at`` is the key's parent as problems name it (``rules[2].`` for ``rules[].``).
        """
        key = KEYS[path]
        where = (at if at is not None else (f"{key.parent}." if key.parent else "")) + key.name
        if data.get(key.name) is None:
            return key.default
        raw = data[key.name]
        try:
            return key.kind(raw)
        except Refused as exc:
            self.problem(where, str(exc))
        except (TypeError, ValueError) as exc:
            self.problem(where, f"{exc} (got {raw!r})")
        return key.default

    def read_file(self, key: str, value: Any) -> str | None:
        if not isinstance(value, str):
            self.problem(key, "must be a file path")
            return None
        path = self.path(value)
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            self.problem(key, f"cannot read {str(path)!r}: {exc.strerror}")
            return None

    def path(self, value: str) -> Path:
        """A path from the config: relative ones are relative to the config file's folder."""
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path

    def secret(self, data: dict[str, Any], key: Key) -> tuple[str, Any] | None:
        """Where a secret came from and its value (a list for ``many``), or None.

        The sources are the key itself (as written), ``<key>_file`` (the file's text; for
        ``many`` one entry per line) and the key's environment variable (for ``many``
        comma-separated). More than one is a problem; so is none, for a required key, unless
        ``<key>_file`` was given and could not be read (a problem already).
        """
        sources: list[tuple[str, Any]] = []
        if data.get(key.name) is not None:
            sources.append((key.path, data[key.name]))
        file_key = f"{key.name}_file"
        if data.get(file_key) is not None:
            text = self.read_file(f"{key.path}_file", data[file_key])
            if text is not None:
                lines = [line.strip() for line in text.splitlines() if line.strip()]
                sources.append((f"{key.path}_file", lines if key.many else text))
        raw = self.environ.get(key.env, "").strip()
        if raw:
            sources.append((key.env, [p.strip() for p in raw.split(",") if p.strip()]
                            if key.many else raw))
        if len(sources) > 1:
            self.problem(key.path, "is given more than once: " + ", ".join(w for w, _ in sources))
            return None
        if not sources and key.required and file_key not in data:
            self.problem(key.path, f"is required (or {file_key}, or the environment variable "
                         f"{key.env})")
        return sources[0] if sources else None
