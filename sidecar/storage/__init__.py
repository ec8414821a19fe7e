"""Storage: narrow roles (``roles``) over one set of SQL statements (``sql``), run by SQLite
(``sqlite``) or PostgreSQL (``postgres``), with the schema's history as files (``migrations/``).

Storage imports the core and ``sidecar.errors`` only; which backend a config names is chosen
in ``sidecar.wiring``. The PostgreSQL backend (asyncpg) is imported only when used.
"""

from sidecar.storage.credentials import Credential
from sidecar.storage.records import RESET, SIGNIN, Attempt, Change, Device, Event, Scope, UserState
from sidecar.storage.roles import (
    Attempts,
    Bursts,
    Credentials,
    Devices,
    Events,
    Feed,
    Grants,
    Keys,
    Limits,
    Storage,
    Users,
)
from sidecar.storage.sql import SQLStorage
from sidecar.storage.sqlite import SQLiteStorage

__all__ = ["RESET", "SIGNIN", "Attempt", "Attempts", "Bursts", "Change", "Credential", "Credentials",
           "Device", "Devices", "Event", "Events", "Feed", "Grants", "Keys", "Limits", "SQLStorage",
           "SQLiteStorage", "Scope",
           "Storage", "UserState", "Users"]
