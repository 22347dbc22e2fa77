"""`audiospective run`: the whole app from one command, for a laptop or a small server.

Starts (or reuses) the embedded Postgres unless DATABASE_URL is set, applies migrations,
then supervises child processes: gunicorn (web), a procrastinate worker, and in demo
mode the Spotify simulator. Output is prefixed with the process name.

Supervision: a child that dies is started again, after 1 s, then 2, 4… up to 30 s if it
keeps dying (a child that ran for a minute starts the count again); the others keep
serving meanwhile. The embedded Postgres is watched the same way and started again in
its data directory (crash recovery replays its log), while the web answers 503 and the
worker waits to reconnect. Ctrl-C or SIGTERM stops everything cleanly.

Children run in their own sessions so that Ctrl-C reaches only this supervisor, which
then stops them all; a dead child's whole session is killed before it is replaced, so
no orphan (a gunicorn worker, say) keeps its port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
import requests

from . import embedded_pg, migrate
from .config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, ROOT, SPOTIFY_ACCOUNTS_DEFAULT, load_settings
from .db import resolve_database_url

STARTUP_TIMEOUT_S = 60
RESTART_DELAY_S = 1.0
RESTART_DELAY_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long has recovered: its next restart is quick again
POSTGRES_CHECK_EVERY_S = 1.0


@dataclass
class Backoff:
    """When a thing that keeps failing may be tried again."""

    delay: float = RESTART_DELAY_S
    retry_at: float | None = None

    def failed(self, now: float, *, ran_for: float = 0.0) -> float:
        if ran_for >= STABLE_AFTER_S:
            self.delay = RESTART_DELAY_S
        wait, self.retry_at = self.delay, now + self.delay
        self.delay = min(self.delay * 2, RESTART_DELAY_MAX_S)
        return wait

    def due(self, now: float) -> bool:
        return self.retry_at is not None and now >= self.retry_at


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: Backoff = field(default_factory=Backoff)


class Supervisor:
    def __init__(self, say: Callable[[str], None]) -> None:
        self.children: list[Child] = []
        self._say = say
        self._print_lock = threading.Lock()

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env)
        self.children.append(child)
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.argv, env=child.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True,
        )
        child.started_at = time.monotonic()
        child.backoff.retry_at = None
        threading.Thread(target=self._relay, args=(child.name, child.process), daemon=True).start()

    def _relay(self, name: str, process: subprocess.Popen) -> None:
        for line in process.stdout:
            with self._print_lock:
                sys.stderr.write(f"{name:>9} | {line}")
                sys.stderr.flush()

    def exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def tend(self, now: float) -> None:
        """Restart, when their time has come, children that died."""
        for child in self.children:
            if child.backoff.retry_at is None and child.process.poll() is not None:
                _kill_session(child.process)
                wait = child.backoff.failed(now, ran_for=now - child.started_at)
                self._say(f"{child.name} exited with status {child.process.returncode}; starting it again in "
                          f"{wait:.0f} s")
            elif child.backoff.due(now):
                child.restarts += 1
                self._spawn(child)
                self._say(f"{child.name} started again (pid {child.process.pid})")

    def stop(self, timeout: float = 15) -> None:
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            _kill_session(child.process)


class PostgresWatch:
    """Starts the embedded Postgres again when it dies."""

    def __init__(self, pgdata: Path, say: Callable[[str], None]) -> None:
        self.pgdata, self._say = pgdata, say
        self.backoff = Backoff()
        self.restarts = 0
        self._checked = 0.0

    def tend(self, now: float) -> None:
        if now - self._checked < POSTGRES_CHECK_EVERY_S or (self.backoff.retry_at and not self.backoff.due(now)):
            return
        self._checked = now
        if embedded_pg.is_running(self.pgdata):
            self.backoff = Backoff()
            return
        if self.backoff.retry_at is None:
            self._say("the embedded Postgres stopped; starting it again")
        try:
            embedded_pg.restart(self.pgdata)
        except Exception as exc:  # noqa: BLE001 - any failure to start is retried
            wait = self.backoff.failed(now)
            self._say(f"the embedded Postgres did not start ({type(exc).__name__}); trying again in {wait:.0f} s")
            return
        self.restarts += 1
        self.backoff = Backoff()
        self._say("the embedded Postgres is running again")


def _kill_session(process: subprocess.Popen) -> None:
    """Whatever the child left behind in its session (it is the session's leader)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_all(*, demo: bool, port: int | None, host: str, simulator_port: int | None, web_workers: int) -> int:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if port is not None:
        env["PORT"] = str(port)
    port = int(env.get("PORT") or 5000)

    real_spotify = env.get("SPOTIFY_ACCOUNTS_URL", SPOTIFY_ACCOUNTS_DEFAULT) == SPOTIFY_ACCOUNTS_DEFAULT
    if not demo and real_spotify and not env.get("SPOTIFY_CLIENT_ID"):
        click.echo("audiospective: SPOTIFY_CLIENT_ID is not set, so starting in demo mode with the built-in "
                   "Spotify simulator (see README to connect a real Spotify app).", err=True)
        demo = True
    simulator_port = simulator_port or port + 1
    if demo:
        simulator_url = f"http://127.0.0.1:{simulator_port}"
        env.update(SPOTIFY_ACCOUNTS_URL=simulator_url, SPOTIFY_API_URL=simulator_url,
                   SPOTIFY_CLIENT_ID=DEMO_CLIENT_ID, SPOTIFY_CLIENT_SECRET=DEMO_CLIENT_SECRET)

    settings = load_settings(env)  # ConfigError propagates to the CLI's one-line report
    for p, what in ((port, "--port"), (simulator_port if demo else None, "--simulator-port")):
        if p is not None and not _port_free(host if p == port else "127.0.0.1", p):
            click.echo(f"audiospective: port {p} is already in use; choose another with {what}", err=True)
            return 2

    database_url = resolve_database_url(settings)
    migrate.upgrade(database_url)
    # Children get the resolved database and the (possibly generated) secrets explicitly,
    # so they neither start a second embedded server nor generate different keys.
    env.update(DATABASE_URL=database_url, SECRET_KEY=settings.secret_key,
               TOKEN_ENCRYPTION_KEY=",".join(settings.token_encryption_keys))

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    say = lambda message: click.echo(f"audiospective: {message}", err=True)  # noqa: E731
    supervisor = Supervisor(say)
    postgres = PostgresWatch(settings.data_dir / "pg", say) if settings.uses_embedded_db else None
    stopping = threading.Event()

    def request_stop(signum, frame):
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    me = [sys.executable, "-m", "app"]
    try:
        if demo:
            # Its tokens outlive it: demo users archived before a restart stay archived.
            supervisor.start("simulator", me + ["simulator", "--port", str(simulator_port),
                                                "--state", str(settings.data_dir / "simulator-tokens.json")], env)
            if not _wait_http(f"{simulator_url}/", supervisor, stopping):
                return _failed(supervisor, "the simulator did not start")
        supervisor.start("web", web_command(f"{host}:{port}", web_workers) + [
            "--graceful-timeout", "10", "--access-logfile", "-"], env)
        supervisor.start("worker", me + ["worker"], env)
        if not _wait_http(f"http://127.0.0.1:{port}/healthz", supervisor, stopping):
            return _failed(supervisor, "the web server did not become healthy")

        shown_host = "127.0.0.1" if host in ("0.0.0.0", "127.0.0.1") else host
        click.echo("", err=True)
        click.echo(f"  Audiospective is running: http://{shown_host}:{port}", err=True)
        if demo:
            click.echo(f"  Demo mode: signing in uses the Spotify simulator at {simulator_url}", err=True)
        if settings.uses_embedded_db:
            click.echo(f"  Database: embedded Postgres in {settings.data_dir / 'pg'}", err=True)
        click.echo("  Press Ctrl-C to stop.\n", err=True)

        # Slept, not Event.wait(0.25): a timed wait on a lock trusts the monotonic clock to be
        # the kernel's, which is not so under libfaketime (the README's year-ahead check),
        # where it would wait a year. A signal still stops the loop within 0.25 s.
        while True:
            time.sleep(0.25)
            if stopping.is_set():  # before tending: children a Ctrl-C stopped are not restarted
                break
            now = time.monotonic()
            if postgres is not None:
                postgres.tend(now)
            supervisor.tend(now)
        click.echo("audiospective: stopping…", err=True)
        return 0
    finally:
        supervisor.stop()


def web_command(bind: str, workers: int) -> list[str]:
    """The web process as the Procfile starts it: gunicorn's `asgi` worker serving
    wsgi.py's `asgi` (the listen API's fast path on the event loop, the rest of the app
    in WEB_THREADS threads per process)."""
    return [sys.executable, "-m", "gunicorn", "wsgi:asgi", "--worker-class", "asgi", "--bind", bind,
            "--workers", str(workers), "--no-control-socket"]


def _failed(supervisor: Supervisor, why: str) -> int:
    click.echo(f"audiospective: {why}; stopping everything", err=True)
    return 1


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _wait_http(url: str, supervisor: Supervisor, stopping: threading.Event) -> bool:
    keep_waiting = lambda: supervisor.exited() is None and not stopping.is_set()  # noqa: E731
    return wait_for_200(url, keep_waiting) is not None


def wait_for_200(url: str, keep_waiting=lambda: True, timeout: float = STARTUP_TIMEOUT_S,
                 interval: float = 0.1) -> float | None:
    """Poll `url` until it answers 200; the seconds that took, or None if given up.
    Also used by tests and bench.startup to wait for `audiospective run`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout and keep_waiting():
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(interval)
    return None
