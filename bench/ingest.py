"""Listens from other players: sustained POST /1/submit-listens through gunicorn.

    python -m bench.ingest [--clients 8] [--seconds 20] [--web-workers 2] [--users 8]

A private Postgres (embedded, in a temporary directory), the Procfile's web server
(gunicorn's `asgi` worker, `--web-workers` processes, `--web-threads` threads each for
what is not a small listen request) and one `audiospective worker`, all
separate processes. `--clients` keep-alive connections (asyncio, in this process), each
with a user's token (`--users` of them), send for `--seconds`:

1. single listens (`listen_type: single`, one listen a request);
2. import batches of 1,000 listens.

Then 3: `audiospective import` of a Last.fm CSV of `--lastfm-rows` scrobbles (as
lastfm.ghan.nl writes it), as its own process: rows per second and its peak RSS. Twice:
for a user whose archive already holds the API phases' listens in the same years (each
row matched against them), and for a user with an empty archive on the same instance.

Each phase reports requests and listens per second accepted, latency percentiles per
request, and how long the worker then took to merge the inbox into plays (the listens
are real plays in the archive only then): merged listens per second over the phase and
its drain. Distinct tracks and timestamps, so every listen is a new play. The rate limit
is raised out of the way (it still counts every request, as in production).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from cryptography.fernet import Fernet

from app import create_app
from app.api.tokens import create as create_token
from app.config import load_settings
from app.embedded_pg import temporary_server
from app.migrate import upgrade
from app.models import User
from app.runner import wait_for_200, web_command
from app.time import utcnow
from bench.dashboard import percentiles
from bench.poll_throughput import start, stop
from bench.startup import free_port

run_cli = importlib.import_module("bench.import").run_cli  # `import` is a keyword: the module is bench/import.py

BASE_TS = 1_600_000_000


class Client:
    """One keep-alive connection sending one kind of request as fast as answers come.
    Raw HTTP/1.1 over asyncio, every request's bytes made before the clock starts: the
    clients share the machine's two cores with the server, and a thread per client with
    http.client spent three times as much of them per request (a scrobbler's player runs
    on another machine)."""

    def __init__(self, host: str, port: int, token: str, number: int, batch: int, prepared: int):
        self.host, self.port = host, port
        self.number, self.batch = number, batch
        self.head = (f"POST /1/submit-listens HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Token {token}\r\n"
                     "Content-Type: application/json\r\n")
        self.sequence = 0
        self.requests = [self.request() for _ in range(prepared)]
        self.latencies: list[float] = []
        self.listens = 0
        self.errors: dict[int, int] = {}

    def request(self) -> bytes:
        listens = []
        for _ in range(self.batch):
            n = self.sequence = self.sequence + 1
            listens.append({"listened_at": BASE_TS + self.number * 5_000_000 + n * 30,
                            "track_metadata": {"track_name": f"Song {n % 5000}", "artist_name": f"Band {self.number}",
                                               "release_name": f"Album {n % 400}",
                                               "additional_info": {"duration_ms": 180_000,
                                                                   "submission_client": "bench.ingest"}}})
        kind = "single" if self.batch == 1 else "import"
        body = json.dumps({"listen_type": kind, "payload": listens}).encode()
        return f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body

    async def run(self, stop_at: float) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        n = 0
        while time.monotonic() < stop_at:
            request = self.requests[n % len(self.requests)]  # after the last, the same listens again: the merge drops them
            n += 1
            started = time.perf_counter()
            writer.write(request)
            status, close = await _read_response(reader)
            self.latencies.append(time.perf_counter() - started)
            if status == 200:
                self.listens += self.batch
            else:
                self.errors[status] = self.errors.get(status, 0) + 1
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the server closes the connection) of one response, its body read."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" not in fields:
        raise RuntimeError(f"a response without Content-Length: {lines[0]}")
    await reader.readexactly(int(fields["content-length"]))
    return int(lines[0].split()[1]), fields.get("connection", "").lower() == "close"


def phase(url: str, tokens: list[str], args, batch: int, conn: psycopg.Connection) -> dict:
    plays_before = conn.execute("SELECT count(*) FROM plays").fetchone()[0]
    parts = urlsplit(url)
    # Enough distinct bodies for the phase at four times the targets (2,000 requests/s, 20 batches/s), spread
    # over the clients: the server need not serve them evenly, and a client's repeated listens are no new plays.
    prepared = max(50, int((8000 if batch == 1 else 80) * args.seconds / args.clients))
    clients = [Client(parts.hostname, parts.port, tokens[i % len(tokens)], i + (batch > 1) * args.clients, batch,
                      prepared) for i in range(args.clients)]

    async def send() -> float:
        started = time.monotonic()
        await asyncio.gather(*(client.run(started + args.seconds) for client in clients))
        return started

    started = asyncio.run(send())
    sent_s = time.monotonic() - started
    while conn.execute("SELECT count(*) FROM listen_inbox").fetchone()[0]:
        time.sleep(0.2)
    merged_s = time.monotonic() - started
    listens = sum(c.listens for c in clients)
    latencies = [x for c in clients for x in c.latencies]
    errors: dict[int, int] = {}
    for client in clients:
        for status, n in client.errors.items():
            errors[status] = errors.get(status, 0) + n
    plays = conn.execute("SELECT count(*) FROM plays").fetchone()[0] - plays_before
    result = {"requests": len(latencies), "requests_per_s": round(len(latencies) / sent_s),
              "listens_per_s": round(listens / sent_s), "latency_ms": percentiles(latencies),
              "errors": errors, "plays_added": plays, "drain_s": round(merged_s - sent_s, 1),
              "merged_listens_per_s": round(plays / merged_s)}
    print(f"batches of {batch}: {result}", file=sys.stderr)
    return result


def lastfm_csv(path: Path, rows: int) -> Path:
    """A Last.fm export as lastfm.ghan.nl writes it: `rows` scrobbles, newest first, six
    minutes apart (250,000 cover three years), over 20,000 tracks by 2,000 artists (names
    with commas and accents), a track's popularity falling with its rank as people's
    favourites do (log-uniform ranks: Zipf's law with exponent 1)."""
    rng = random.Random(7)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["uts", "utc_time", "artist", "artist_mbid", "album", "album_mbid", "track", "track_mbid"])
        for n in range(rows, 0, -1):
            ts = BASE_TS + n * 360
            track = int(20_000 ** rng.random()) - 1
            writer.writerow([ts, "", f"Künstler {track % 2000}", "", f"Album {track % 4000}, vol. 1", "",
                             f"Track {track}", ""])
    return path


def lastfm_import(source: Path, env: dict[str, str], user: str) -> dict:
    """`audiospective import` of a Last.fm CSV, as its own process: rows/s and peak RSS."""
    stdout, stderr, seconds, peak_mb = run_cli(["import", "--user", user, str(source)], env)
    report = json.loads(stdout.strip().splitlines()[-1])["report"]
    result = {"rows": report["rows"], "imported": report["imported"], "seconds": round(seconds, 2),
              "rows_per_s": round(report["rows"] / seconds), "peak_rss_mb": round(peak_mb, 1),
              "file_mb": round(source.stat().st_size / 1024**2, 1)}
    print(f"Last.fm CSV import for {user}: {result}", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=3, help="threads per web worker (WEB_THREADS)")
    parser.add_argument("--lastfm-rows", type=int, default=250_000, help="rows of the Last.fm CSV imported (0: none)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp_path = Path(tmp)
        with temporary_server(tmp_path, "bench") as database_url:
            upgrade(database_url)
            env = {"DATABASE_URL": database_url, "SECRET_KEY": "bench-" + "k" * 32,
                   "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                   "SPOTIFY_CLIENT_ID": "bench", "SPOTIFY_CLIENT_SECRET": "bench",
                   "AUDIOSPECTIVE_DATA_DIR": str(tmp_path / "var"), "LOG_LEVEL": "WARNING",
                   "API_REQUESTS_PER_10S": "1000000"}
            app = create_app(settings=load_settings(env))
            tokens = []
            with app.extensions["database"].session() as session:
                for i in range(args.users):
                    user = User(spotify_id=f"bench-{i}", display_name=f"Bench {i}")
                    session.add(user)
                    session.flush()
                    tokens.append(create_token(session, user, "bench", now=utcnow())[0])
            app.extensions["database"].dispose()
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            web = start(web_command(f"127.0.0.1:{port}", args.web_workers),
                        {**env, "WEB_THREADS": str(args.web_threads)}, tmp_path / "web.log")
            # 8 jobs at once, as measured since the benchmark began (the default is 2, for
            # the smallest Postgres plans): one merge job per token's user runs at a time.
            worker = start([sys.executable, "-m", "app", "worker", "--concurrency", "8"], env, tmp_path / "worker.log")
            try:
                if wait_for_200(f"{url}/healthz", lambda: web.poll() is None) is None:
                    raise SystemExit("the web server did not start:\n" + (tmp_path / "web.log").read_text())
                with psycopg.connect(database_url, autocommit=True) as conn:
                    single = phase(url, tokens, args, 1, conn)
                    batches = phase(url, tokens, args, 1000, conn)
            finally:
                stop(web)
                stop(worker)
            imported = into_empty = None
            if args.lastfm_rows:
                source = lastfm_csv(tmp_path / "scrobbles.csv", args.lastfm_rows)
                imported = lastfm_import(source, env, "bench-0")
                run_cli(["users", "add", "--spotify-id", "bench-new", "--name", "Bench new"], env)
                into_empty = lastfm_import(source, env, "bench-new")
    print(json.dumps({"clients": args.clients, "users": args.users, "seconds": args.seconds,
                      "web_workers": args.web_workers, "single": single, "import_batches": batches,
                      "lastfm_csv_import": imported, "lastfm_csv_import_empty_archive": into_empty}))


if __name__ == "__main__":
    main()
