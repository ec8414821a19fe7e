"""The schema's history as files: one per version and dialect, the same versions in both."""

from __future__ import annotations

import sqlite3

from sidecar.storage.migrations import DIALECTS, files, migrations, statements


def test_both_dialects_hold_the_same_versions_under_the_same_names() -> None:
    names = {dialect: [p.name.replace(f".{dialect}.", ".") for p in files(dialect)]
             for dialect in DIALECTS}
    assert names["sqlite"] == names["postgres"]
    assert [name[:5] for name in names["sqlite"]] == [f"V{n:04d}" for n in range(1, 8)]


def test_every_file_holds_statements() -> None:
    for dialect in DIALECTS:
        for version in migrations(dialect):
            assert version and all(s and not s.endswith(";") for s in version)


def test_comments_and_blank_lines_are_not_statements() -> None:
    sql = "-- a comment\nCREATE TABLE a (x INTEGER);\n\n-- another\nCREATE INDEX a_x ON a (x);\n"
    assert statements(sql) == ("CREATE TABLE a (x INTEGER)", "CREATE INDEX a_x ON a (x)")


def test_the_sqlite_history_builds_the_schema() -> None:
    db = sqlite3.connect(":memory:")
    for version in migrations("sqlite"):
        for statement in version:
            db.execute(statement)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"users", "pending", "recovery_codes", "failures", "events", "contacts",
                      "devices", "grants", "webauthn_credentials", "webauthn_challenges", "feed",
                      "bursts", "sqlite_sequence"}
