"""Import speed and memory: realistic 250,000-row exports, end to end.

    python -m bench.import [--rows 250000] [--preload-plays 1000000] [--account-rows 250000]

Generates my_spotify_data.zip (≈ 8 years, 40k tracks, 8k artists, with podcast episodes,
short plays, private sessions, offline rows and rows repeated across files), then runs
`audiospective import` as its own process against a private Postgres: once into an empty
archive, and once more for a user whose archive already holds --preload-plays plays
(earlier years, inserted directly). Then the account-data case: --account-rows rows of
StreamingHistory_music_*.json over one year, as account data covers (names only, to the
minute: every row is matched by name),
imported into an empty archive and then once more, when every row matches a play already
archived (the matching that was quadratic once). Seconds are the whole command's, start-up
included; peak RSS is the import process's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet

from app.config import ROOT
from app.embedded_pg import temporary_server
from app.migrate import upgrade
from app.simulator.export import as_account_data, synthetic_history, synthetic_zip
from bench.memory import wait_for_exit


def run_cli(args: list[str], env: dict[str, str]) -> tuple[str, str, float, float]:
    """(stdout, stderr, seconds, peak RSS in MB) of `audiospective ARGS` run as its own process."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-m", "app", *args], env={**os.environ, **env}, cwd=ROOT,
                                   stdout=out, stderr=err, text=True)
        peak_mb = wait_for_exit(process)
        seconds = time.monotonic() - started
        out.seek(0), err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"audiospective {' '.join(args)} failed:\n{err.read()}")
        return out.read(), err.read(), seconds, peak_mb


def preload(database_url: str, user: str, plays: int, before_ms: int) -> None:
    """`plays` plays for the user over the ten years before `before_ms`, on 100k tracks."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        user_id = conn.execute("SELECT id FROM users WHERE spotify_id = %s", (user,)).fetchone()[0]
        conn.execute("INSERT INTO tracks (spotify_id, name, enriched_at) SELECT 'preload' || lpad(g::text, 15, '0'), "
                     "'Preloaded ' || g, now() FROM generate_series(1, 100000) g")
        first = conn.execute("SELECT min(id) FROM tracks WHERE spotify_id LIKE 'preload%'").fetchone()[0]
        conn.execute("""
            INSERT INTO plays (played_at, user_id, track_id, ms_played, source)
            SELECT 'epoch'::timestamptz + (%(before)s - g::bigint * %(step)s) * interval '1 millisecond',
                   %(user)s, %(first)s + (g::bigint * 7919) %% 100000, 180000, 1
              FROM generate_series(1, %(plays)s) g
        """, {"before": before_ms, "step": 10 * 365 * 86_400_000 // plays, "user": user_id, "first": first,
              "plays": plays})
        conn.execute("VACUUM ANALYZE plays")


def measure(zip_path: Path, env: dict[str, str], user: str) -> dict:
    stdout, stderr, seconds, peak_mb = run_cli(["import", "--user", user, str(zip_path)], env)
    print("".join(line for line in stderr.splitlines(keepends=True) if "merged in" in line), end="", file=sys.stderr)
    report = json.loads(stdout.strip().splitlines()[-1])["report"]
    figures = {"rows": report["rows"], "seconds": round(seconds, 2), "rows_per_s": round(report["rows"] / seconds),
               "peak_rss_mb": round(peak_mb, 1), "report": report}
    print(f"{user}: {figures['rows']} rows in {figures['seconds']} s = {figures['rows_per_s']} rows/s, "
          f"peak RSS {figures['peak_rss_mb']} MB (import itself: {report['seconds']} s)", file=sys.stderr)
    return figures


def generate(path: Path, rows: int, kind: str) -> Path:
    """The zip, made in a process of its own: a child forked from a parent holding 250k rows
    in memory would report the parent's pages as its own peak RSS."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "bench.import", "--generate", str(path), "--rows", str(rows), "--kind", kind],
                   check=True, cwd=ROOT)
    print(f"generated {path.stat().st_size / 1e6:.1f} MB {kind} zip in {time.monotonic() - started:.1f} s",
          file=sys.stderr)
    return path


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--preload-plays", type=int, default=1_000_000)
    parser.add_argument("--account-rows", type=int, default=250_000)
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)  # internal: write the zip and stop
    parser.add_argument("--kind", default="extended", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        if args.kind == "extended":
            synthetic_zip(args.generate, synthetic_history(args.rows, years=8, tracks=40_000, artists=8_000))
        else:  # account data covers the past year only
            history = synthetic_history(args.rows, years=1, tracks=40_000, artists=8_000)
            synthetic_zip(args.generate, as_account_data(history), kind="account")
        return

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        tmp_path = Path(tmp)
        zip_path = generate(tmp_path / "my_spotify_data.zip", args.rows, "extended")
        with temporary_server(tmp_path, "bench") as database_url:
            upgrade(database_url)
            env = {"DATABASE_URL": database_url, "SECRET_KEY": "bench-" + "k" * 32,
                   "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                   "SPOTIFY_ACCOUNTS_URL": "http://127.0.0.1:9", "SPOTIFY_API_URL": "http://127.0.0.1:9",
                   "LOG_LEVEL": "INFO"}
            run_cli(["users", "add", "--spotify-id", "empty-archive", "--name", "Empty archive"], env)
            summary = measure(zip_path, env, "empty-archive")
            if args.preload_plays:
                run_cli(["users", "add", "--spotify-id", "big-archive", "--name", "Big archive"], env)
                first_ms = int(summary["report"]["period"]["from"] and _ms(summary["report"]["period"]["from"]))
                preload(database_url, "big-archive", args.preload_plays, first_ms - 86_400_000)
                with_archive = measure(zip_path, env, "big-archive")
                summary[f"with_{args.preload_plays}_plays"] = {k: v for k, v in with_archive.items() if k != "report"}
            if args.account_rows:
                account_zip = generate(tmp_path / "account_data.zip", args.account_rows, "account")
                run_cli(["users", "add", "--spotify-id", "account-data", "--name", "Account data"], env)
                first, again = (measure(account_zip, env, "account-data") for _ in range(2))
                summary["account_data"] = {k: v for k, v in first.items() if k != "report"}
                summary["account_data_again"] = {k: v for k, v in again.items() if k != "report"}
                assert again["report"]["imported"] == 0, again["report"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
