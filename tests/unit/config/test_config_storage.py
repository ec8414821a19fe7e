"""The storage section: exactly one of SQLite and PostgreSQL, the DSN never echoed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sidecar.config import ENV_POSTGRES_DSN, PostgresConfig, SQLiteConfig, load_config, parse_config
from sidecar.errors import ConfigError
from sidecar.storage import SQLiteStorage
from sidecar.storage.postgres import PostgresStorage, describe, numbered
from sidecar.wiring import make_storage
from tests.unit.config.test_config import base

DSN = "postgresql://sidecar:s3cret-pw@db.internal:5433/totp"


def with_storage(tmp_path: Path, storage: Any) -> dict[str, Any]:
    data = base(tmp_path)
    data["storage"] = storage
    return data


def problems(data: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ or {})
    return info.value.lines


def test_sqlite_path_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("primary: {introspect: {url: 'http://127.0.0.1/me'}}\n"
                    f"secrets: {{signing_keys: [{'k' * 40}], hash_key: {'h' * 40},"
                    f" encryption_keys: [{'e' * 40}]}}\n"
                    "storage: {sqlite: {path: data/sidecar.db}}\n")
    config = load_config(path, environ={})
    assert config.storage == SQLiteConfig(str(tmp_path / "data" / "sidecar.db"))
    assert config.sqlite_path == str(tmp_path / "data" / "sidecar.db")
    assert isinstance(make_storage(config), SQLiteStorage)


def test_postgres_dsn_inline(tmp_path: Path) -> None:
    config = parse_config(with_storage(tmp_path, {"postgres": {"dsn": DSN}}), {})
    assert config.storage == PostgresConfig(DSN)
    assert "s3cret" not in repr(config)
    storage = make_storage(config)
    assert isinstance(storage, PostgresStorage) and "s3cret" not in repr(storage)
    with pytest.raises(AttributeError):
        _ = config.sqlite_path


def test_postgres_dsn_from_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "dsn").write_text(DSN + "\n")
    config = parse_config(with_storage(tmp_path, {"postgres": {"dsn_file": "dsn"}}), {},
                          base_dir=tmp_path)
    assert config.storage == PostgresConfig(DSN)
    storages: tuple[dict[str, object] | None, ...] = ({"postgres": None}, {"postgres": {}}, None)
    for storage in storages:  # the env variable alone suffices
        data = with_storage(tmp_path, storage)
        assert parse_config(data, {ENV_POSTGRES_DSN: DSN}).storage == PostgresConfig(DSN)


def test_exactly_one_backend(tmp_path: Path) -> None:
    both = with_storage(tmp_path, {"sqlite": {"path": "x.db"}, "postgres": {"dsn": DSN}})
    assert any(p.startswith("storage: give exactly one") for p in problems(both))
    sqlite_and_env = with_storage(tmp_path, {"sqlite": {"path": "x.db"}})
    found = problems(sqlite_and_env, {ENV_POSTGRES_DSN: DSN})
    assert any(p.startswith("storage: ") and ENV_POSTGRES_DSN in p for p in found)
    neither = with_storage(tmp_path, {})
    assert any(p.startswith("storage.sqlite.path: is required") for p in problems(neither))
    assert any(p.startswith("storage.postgres.dsn: is required")
               for p in problems(with_storage(tmp_path, {"postgres": {}})))


def test_postgres_problems_name_the_key_and_hide_the_value(tmp_path: Path) -> None:
    found = problems(with_storage(tmp_path, {"postgres": {"dsn": DSN, "dsn_file": "nope"}}))
    assert any(p.startswith("storage.postgres.dsn_file: cannot read") for p in found)
    found = problems(with_storage(tmp_path, {"postgres": {"dsn": "mysql://u:s3cret-pw@h/db"}}))
    assert found == ["storage.postgres.dsn: must be a URL such as "
                     "postgresql://user:password@host:5432/dbname"]
    found = problems(with_storage(tmp_path, {"postgres": {"dsn": "postgresql://u:s3cret-pw@h:x/db"}}))
    assert found and "s3cret" not in "".join(found)
    found = problems(with_storage(tmp_path, {"postgres": {"dsn": DSN}}), {ENV_POSTGRES_DSN: DSN})
    assert found == [f"storage.postgres.dsn: is given more than once: storage.postgres.dsn,"
                     f" {ENV_POSTGRES_DSN}"]
    found = problems(with_storage(tmp_path, {"postgres": {"url": DSN}}))
    assert any(p.startswith("storage.postgres.url: unknown key") for p in found)
    found = problems(with_storage(tmp_path, {"postgres": {"dsn": 5432}}))
    assert any(p.startswith("storage.postgres.dsn: must be a URL") for p in found)


def test_dsn_description_and_placeholders() -> None:
    assert describe(DSN) == "db.internal:5433/totp"
    assert describe("postgresql:///totp?host=/run/postgresql&password=x") == "/totp"
    assert numbered("UPDATE t SET a = ? WHERE b = ? AND c < ?") == \
        "UPDATE t SET a = $1 WHERE b = $2 AND c < $3"


def test_pgbouncer_and_a_listen_dsn(tmp_path: Path) -> None:
    """Behind PgBouncer: no prepared statements kept, LISTEN only on the direct ``listen_dsn``;
    without PgBouncer the DSN itself listens. A bad listen DSN is a problem, never echoed."""
    direct = "postgresql://sidecar:s3cret-pw@db.internal:5432/totp"
    config = parse_config(with_storage(tmp_path, {"postgres": {
        "dsn": DSN, "pgbouncer": True, "listen_dsn": direct}}), {})
    assert config.storage == PostgresConfig(DSN, direct, True)
    assert "s3cret" not in repr(config.storage)
    storage = make_storage(config)
    assert isinstance(storage, PostgresStorage)
    assert storage.pgbouncer and storage.listens and storage.listen_dsn == direct
    alone = make_storage(parse_config(with_storage(tmp_path, {"postgres": {
        "dsn": DSN, "pgbouncer": True}}), {}))
    assert isinstance(alone, PostgresStorage) and not alone.listens  # polled only
    plain = make_storage(parse_config(with_storage(tmp_path, {"postgres": {"dsn": DSN}}), {}))
    assert isinstance(plain, PostgresStorage) and plain.listen_dsn == DSN and not plain.pgbouncer
    found = problems(with_storage(tmp_path, {"postgres": {
        "dsn": DSN, "listen_dsn": "mysql://u:s3cret-pw@h/db"}}))
    assert found == ["storage.postgres.listen_dsn: must be a URL such as "
                     "postgresql://user:password@host:5432/dbname (a direct connection)"]
