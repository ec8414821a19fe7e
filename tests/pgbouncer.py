"""A real PgBouncer in transaction mode on a free port, in front of the tests' PostgreSQL.

Debian's ``pgbouncer`` (``$PGBOUNCER`` or on PATH or /usr/sbin/pgbouncer), started with a
config of its own (trust, every database of the server at ``tests.pg.MAINTENANCE_DSN``);
stopped afterwards. Run as root, it drops to the ``postgres`` user (PgBouncer refuses root).
When the binary is missing the test is skipped, or fails when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.e2e.stacks import find_binary, stop
from tests.pg import MAINTENANCE_DSN, unavailable
from tests.ports import free_port

START_SECONDS = 10.0


def binary() -> str:
    found = find_binary("PGBOUNCER", "pgbouncer", "/usr/sbin/pgbouncer")
    if found is None:
        unavailable("pgbouncer not installed (apt-get install pgbouncer; scripts/system-deps.sh)")
    assert found is not None
    return found


def through(port: int, dsn: str) -> str:
    """``dsn`` (a database of the tests' server) reached through PgBouncer on ``port``."""
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}"))


@contextlib.contextmanager
def running_pgbouncer() -> Iterator[int]:
    """A PgBouncer in transaction mode; its port."""
    server = urlsplit(MAINTENANCE_DSN)
    user = server.username or "postgres"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pgbouncer-") as tmp:
        folder = Path(tmp)
        (folder / "users.txt").write_text(f'"{user}" ""\n')
        (folder / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server.hostname or '127.0.0.1'} port={server.port or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
            "pool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 20\n"
            "server_reset_query =\nignore_startup_parameters = extra_float_digits\n"
            f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n")
        args = [binary()]
        if os.geteuid() == 0:
            os.chown(folder, pwd.getpwnam("postgres").pw_uid, -1)
            for name in ("users.txt", "pgbouncer.ini"):
                os.chmod(folder / name, 0o644)
            args += ["-u", "postgres"]
        with (folder / "stdout.log").open("wb") as out:
            proc = subprocess.Popen([*args, str(folder / "pgbouncer.ini")], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + START_SECONDS
            while True:
                if proc.poll() is not None:
                    told = (folder / "stdout.log").read_text(errors="replace")
                    raise RuntimeError(f"pgbouncer exited with {proc.returncode}: {told}")
                with contextlib.suppress(OSError):
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                assert time.monotonic() < deadline, "pgbouncer did not listen"
                time.sleep(0.05)
            yield port
        finally:
            stop(proc)
