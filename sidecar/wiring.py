"""The composition root: where the parts of a running sidecar are chosen and joined.

The web app, the command line, the benchmarks and the tests build their parts here and
nowhere else.
"""

from __future__ import annotations

from sidecar.config import Config, PostgresConfig
from sidecar.storage import SQLiteStorage, Storage


def make_storage(config: Config) -> Storage:
    """The storage the config names: a SQLite file, or a PostgreSQL database."""
    if isinstance(config.storage, PostgresConfig):
        from sidecar.storage.postgres import PostgresStorage  # asyncpg is loaded only when used

        return PostgresStorage(config.storage.dsn)
    return SQLiteStorage(config.storage.path)
