"""User-polls per hour with real worker processes, against a simulator that adds latency.

    python -m bench.poll_throughput [--users 600] [--seconds 60] [--latency-ms 100] [--concurrency 2]

Everything is real and separate: a private Postgres (embedded, in a temporary
directory), the Spotify simulator as its own process answering every request 100 ms late,
and `audiospective worker` processes. Users are signed in with tokens, then the queue is
kept full with rounds of poll jobs (every user once per round, POLL_USERS_PER_JOB per
job). After a warm-up round (each user's first poll stores 50 plays and their
catalogue), polls are counted over a fixed window by the simulator's request counter
(one recently-played request per poll) for 1 and then 2 worker processes.

`--concurrency` is jobs at once per worker. The default, 2, leaves this 2-core machine
room to show how workers scale; at the worker's own default of 8, one worker together
with the simulator and Postgres already saturates both cores.
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
from pathlib import Path

import psycopg
import requests
from cryptography.fernet import Fernet

from app import create_app, queue
from app.auth.signin import sign_in
from app.config import ROOT, load_settings
from app.embedded_pg import temporary_server
from app.migrate import upgrade
from app.runner import wait_for_200
from app.time import utcnow
from bench.startup import free_port

BATCH = 25


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, env={**os.environ, **env}, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def polls_so_far(simulator_url: str) -> int:
    return requests.get(f"{simulator_url}/_sim/stats", timeout=10).json().get("api:recently_played", 0)


def defer_round(conn: psycopg.Connection, user_ids: list[int]) -> None:
    queue.defer(queue.POLL_BATCH, conn, *({"user_ids": user_ids[i:i + BATCH]}
                                          for i in range(0, len(user_ids), BATCH)))


def queued(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' "
                        "AND task_name = 'jobs.archival.poll_batch'").fetchone()[0]


def measure(workers: int, args, env: dict[str, str], conn: psycopg.Connection, user_ids: list[int],
            simulator_url: str, logs: Path) -> dict:
    processes = [start([sys.executable, "-m", "app", "worker", "--concurrency", str(args.concurrency),
                        "--queue", "archival"], env, logs / f"worker-{workers}-{i}.log") for i in range(workers)]
    try:
        defer_round(conn, user_ids)  # warm-up: first polls store a whole page each
        while queued(conn) or conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing' "
                                           "AND task_name = 'jobs.archival.poll_batch'").fetchone()[0]:
            time.sleep(0.5)
        rounds = 1
        before, started = polls_so_far(simulator_url), time.monotonic()
        while time.monotonic() - started < args.seconds:
            if queued(conn) < len(user_ids) // BATCH:  # keep at least a round waiting
                defer_round(conn, user_ids)
                rounds += 1
            time.sleep(0.25)
        polls, elapsed = polls_so_far(simulator_url) - before, time.monotonic() - started
    finally:
        for process in processes:
            stop(process)
        conn.execute("DELETE FROM procrastinate_jobs WHERE status = 'todo'")
    result = {"polls_per_hour": round(polls / elapsed * 3600), "polls": polls, "seconds": round(elapsed, 1)}
    print(f"{workers} worker(s): {result}", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        tmp_path = Path(tmp)
        with temporary_server(tmp_path, "bench") as database_url:
            upgrade(database_url)
            port = free_port()
            simulator_url = f"http://127.0.0.1:{port}"
            simulator = start([sys.executable, "-m", "app", "simulator", "--port", str(port), "--latency-ms",
                               str(args.latency_ms), "--accounts", str(args.users)], {}, tmp_path / "simulator.log")
            try:
                if wait_for_200(simulator_url + "/", lambda: simulator.poll() is None) is None:
                    raise SystemExit("the simulator did not start")
                env = {"DATABASE_URL": database_url, "SECRET_KEY": "bench-" + "k" * 32,
                       "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(), "SPOTIFY_ACCOUNTS_URL": simulator_url,
                       "SPOTIFY_API_URL": simulator_url, "AUDIOSPECTIVE_DATA_DIR": str(tmp_path / "var"),
                       "POLL_USERS_PER_JOB": str(BATCH), "SPOTIFY_REQUESTS_PER_30S": "100000", "LOG_LEVEL": "WARNING"}
                app = create_app(settings=load_settings(env))
                user_ids = []
                with app.extensions["database"].session() as session:
                    for i in range(args.users):
                        key = f"sim-acct-{i:05d}"
                        grant = requests.post(f"{simulator_url}/_sim/accounts/{key}/grant", timeout=10).json()
                        user = sign_in(session, {"id": f"user{i:05d}", "account_id": key, "display_name": key},
                                       access_token=grant["access_token"], refresh_token=grant["refresh_token"],
                                       expires_in=grant["expires_in"], scope=grant["scope"],
                                       cipher=app.extensions["token_cipher"], now=utcnow())
                        user_ids.append(user.id)
                with psycopg.connect(database_url, autocommit=True) as conn:
                    # Only the benchmark's own jobs poll: the dispatcher finds nobody due.
                    conn.execute("UPDATE archive_state SET next_poll_at = now() + interval '1 day'")
                    results = {str(n): measure(n, args, env, conn, user_ids, simulator_url, tmp_path) for n in (1, 2)}
                    plays = conn.execute("SELECT count(*) FROM plays").fetchone()[0]
                app.extensions["database"].dispose()
            finally:
                stop(simulator)
    print(json.dumps({"users": args.users, "latency_ms": args.latency_ms, "concurrency": args.concurrency,
                      "plays_archived": plays, "workers": results,
                      "scaling_2_vs_1": round(results["2"]["polls_per_hour"] / results["1"]["polls_per_hour"], 2)}))


if __name__ == "__main__":
    main()
