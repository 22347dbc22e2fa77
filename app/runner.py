"""`audiospective run`: the whole app from one command, for a laptop or a small server.

Starts (or reuses) the embedded Postgres unless DATABASE_URL is set, applies migrations,
then supervises child processes: gunicorn (web), a procrastinate worker, and in demo
mode the Spotify simulator. Output is prefixed with the process name. If any child dies,
everything stops with its exit status; Ctrl-C or SIGTERM stops everything cleanly.

Children run in their own sessions so that Ctrl-C reaches only this supervisor, which
then stops them in order (web first, worker last, so jobs finish).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import click
import requests

from . import migrate
from .config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, ROOT, SPOTIFY_ACCOUNTS_DEFAULT, load_settings
from .db import resolve_database_url

STARTUP_TIMEOUT_S = 60


@dataclass
class Child:
    name: str
    process: subprocess.Popen


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self._print_lock = threading.Lock()

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True,
        )
        self.children.append(Child(name, process))
        threading.Thread(target=self._relay, args=(name, process), daemon=True).start()

    def _relay(self, name: str, process: subprocess.Popen) -> None:
        for line in process.stdout:
            with self._print_lock:
                sys.stderr.write(f"{name:>9} | {line}")
                sys.stderr.flush()

    def exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop(self, timeout: float = 15) -> None:
        for child in self.children:  # started in dependency order; stop web first
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


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

    supervisor = Supervisor()
    stopping = threading.Event()

    def request_stop(signum, frame):
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    me = [sys.executable, "-m", "app"]
    try:
        if demo:
            supervisor.start("simulator", me + ["simulator", "--port", str(simulator_port)], env)
            if not _wait_http(f"{simulator_url}/", supervisor, stopping):
                return _failed(supervisor, "the simulator did not start")
        supervisor.start("web", [
            sys.executable, "-m", "gunicorn", "wsgi:app",
            "--bind", f"{host}:{port}", "--workers", str(web_workers), "--threads", "4",
            "--graceful-timeout", "10", "--access-logfile", "-", "--no-control-socket",
        ], env)
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

        while not stopping.wait(0.5):
            dead = supervisor.exited()
            if dead is not None:
                return _failed(supervisor, f"{dead.name} exited with status {dead.process.returncode}")
        click.echo("audiospective: stopping…", err=True)
        return 0
    finally:
        supervisor.stop()


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
