"""Exports of a large archive: each format end to end through the job, time and memory.

    python -m bench.export [--plays 1000000] [--small 100000]

Builds, in a private Postgres, the dashboard benchmark's catalogue (100k tracks, 25k albums,
15k artists) and two users with its listening generator: one with --plays plays over ten
years, one with --small over three. For each user and each format (csv, json, spotify) an
export is asked for as the Export page does, and a fresh `audiospective worker` process
writes it: seconds are the job's own (started_at to finished_at), peak RSS the worker
process's whole life (start-up included), bytes the file as downloaded. The small user's
figures show whether memory grows with the archive.

Last line: {"plays": N, "formats": {fmt: {"seconds", "rows_per_s", "peak_rss_mb", "bytes",
"bytes_stored"}}, "small": {"plays": n, "formats": {...}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet

from app.config import ROOT
from app.embedded_pg import temporary_server
from app.migrate import upgrade
from bench.dashboard import TZ, build_catalogue, listening, load_plays
from bench.memory import high_water_mb

FORMATS = ("csv", "json", "spotify")


def add_user(conn: psycopg.Connection, spotify_id: str, plays: int, years: float, seed: int, now: datetime) -> int:
    uid = conn.execute("INSERT INTO users (spotify_id, display_name, timezone) VALUES (%s, %s, %s) RETURNING id",
                       (spotify_id, spotify_id, TZ.key)).fetchone()[0]
    rows = conn.execute("SELECT id, duration_ms FROM tracks ORDER BY id").fetchall()
    load_plays(conn, listening(seed, uid, plays, now, years, [r[0] for r in rows], [r[1] for r in rows]))
    return uid


def build(database_url: str, args) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        build_catalogue(conn)
        add_user(conn, "bench-large", args.plays, 10.0, 0, now)
        add_user(conn, "bench-small", args.small, 3.0, 1, now)
        conn.execute("VACUUM ANALYZE")


def export_once(database_url: str, env: dict[str, str], uid: int, fmt: str, log: Path) -> dict:
    """Ask for the export as the page does (row + job), then run one worker until it is written."""
    from app import create_app
    from app.db import get_database
    from app.exports.service import create_export, queue_export
    from app.models import User

    flask_app = create_app(require_spotify=False)
    database = get_database(flask_app)
    with database.session() as session:
        record = create_export(session, session.get(User, uid), fmt, None, None, now=datetime.now(timezone.utc))
        queue_export(session, record)
        export_id = record.id
    database.dispose()
    with open(log, "a") as log_file:
        worker = subprocess.Popen([sys.executable, "-m", "app", "worker", "--concurrency", "1", "--queue", "exports"],
                                  env={**os.environ, **env}, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        with psycopg.connect(database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 600
            while True:
                row = conn.execute("SELECT status, extract(epoch FROM finished_at - started_at), rows_written, "
                                   "bytes_file, bytes_stored, error FROM exports WHERE id = %s",
                                   (export_id,)).fetchone()
                if row[0] in ("done", "failed") or time.monotonic() > deadline:
                    break
                if worker.poll() is not None:
                    raise SystemExit(f"the worker stopped:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        peak_mb = high_water_mb(worker.pid)
        worker.send_signal(signal.SIGTERM)
        worker.wait()
    if row[0] != "done":
        raise SystemExit(f"{fmt} export of user {uid} ended {row[0]}: {row[5]} (see {log})")
    seconds = float(row[1])
    return {"seconds": round(seconds, 2), "rows_per_s": round(row[2] / seconds), "peak_rss_mb":
            round(peak_mb, 1), "bytes": row[3], "bytes_stored": row[4], "rows": row[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--build-into", help=argparse.SUPPRESS)  # internal: fill this database and stop
    args = parser.parse_args()
    if args.build_into:
        build(args.build_into, args)
        return
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        with temporary_server(Path(tmp), "bench") as database_url:
            upgrade(database_url)
            env = {"DATABASE_URL": database_url, "SECRET_KEY": "bench-" + "k" * 32,
                   "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(), "LOG_LEVEL": "WARNING",
                   # The simulator's addresses (nothing listens there): a worker without Spotify credentials.
                   "SPOTIFY_ACCOUNTS_URL": "http://127.0.0.1:9", "SPOTIFY_API_URL": "http://127.0.0.1:9"}
            os.environ.update(env)
            started = time.monotonic()
            # In a process of its own: the million rows of COPY text it builds are freed when it
            # ends, not kept in this process beside the worker being measured.
            subprocess.run([sys.executable, "-m", "bench.export", "--build-into", database_url, "--plays",
                            str(args.plays), "--small", str(args.small)], check=True, cwd=ROOT)
            with psycopg.connect(database_url, autocommit=True) as conn:
                ids = dict(conn.execute("SELECT spotify_id, id FROM users").fetchall())
            users = {"large": (ids["bench-large"], args.plays), "small": (ids["bench-small"], args.small)}
            print(f"built {args.plays + args.small:,} plays in {time.monotonic() - started:.0f} s", file=sys.stderr)
            for size, (uid, plays) in users.items():
                results[size] = {}
                for fmt in FORMATS:
                    figures = export_once(database_url, env, uid, fmt, Path(tmp) / "worker.log")
                    results[size][fmt] = figures
                    print(f"{size} ({plays:,} plays) {fmt}: {figures['seconds']} s = {figures['rows_per_s']:,} "
                          f"rows/s, peak RSS {figures['peak_rss_mb']} MB, {figures['bytes'] / 1e6:.1f} MB "
                          f"({figures['bytes_stored'] / 1e6:.1f} MB stored)", file=sys.stderr)
    print(json.dumps({"plays": results["large"]["csv"]["rows"], "formats": results["large"],
                      "small": {"plays": results["small"]["csv"]["rows"], "formats": results["small"]}}))


if __name__ == "__main__":
    main()
