"""The schema's history, written once per dialect as files: ``migrations/V000N.Name.<dialect>.up.sql``.

Version N is the file numbered N; a database's ``schema_version`` says how many it has, so a
database made by any earlier release is brought up to date by the files it lacks. Both
dialects hold the same versions under the same names.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

FOLDER = Path(__file__).parent / "migrations"
DIALECTS = ("sqlite", "postgres")
_FILE = re.compile(r"V(\d{4})\.([A-Za-z0-9]+)\.(sqlite|postgres)\.up\.sql")


def files(dialect: str) -> list[Path]:
    """The migration files of ``dialect``, by version; the versions run 1, 2, … without a gap."""
    found = sorted((int(m[1]), path) for path in FOLDER.iterdir()
                   if (m := _FILE.fullmatch(path.name)) and m[3] == dialect)
    versions = [number for number, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"{dialect} migrations are not numbered 1..N: {versions}")
    return [path for _, path in found]


def statements(sql: str) -> tuple[str, ...]:
    """The statements of one file: ``--`` comment lines dropped, split where a line ends with ``;``."""
    text = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return tuple(part.strip() for part in re.split(r";\s*$", text, flags=re.M) if part.strip())


@functools.cache
def migrations(dialect: str) -> tuple[tuple[str, ...], ...]:
    """Every migration of ``dialect`` in order, each as its statements."""
    return tuple(statements(path.read_text(encoding="utf-8")) for path in files(dialect))
