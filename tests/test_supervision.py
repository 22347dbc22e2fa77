"""One process dying never stops the others: `audiospective run` restarts what dies (worker,
web, the embedded Postgres) and the rest keeps serving; a worker that loses its database
waits and reconnects. Real processes, real SIGKILLs; each test prints its recovery time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import psycopg
import pytest
import requests
from cryptography.fernet import Fernet

from app.config import ROOT
from app.embedded_pg import TUNING, ensure_server, restart
from app.migrate import upgrade
from conftest import RunningApp, http_sign_in, pg_ctl, wait_for


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("supervised") / "var"
    app = RunningApp(data_dir, {"WORKER_HEARTBEAT_SECONDS": "1", "WORKER_STALLED_AFTER_SECONDS": "5"})
    yield app
    assert app.stop() == 0, app.output()


def database(running) -> psycopg.Connection:
    return psycopg.connect(f"postgresql://postgres@/audiospective?host={running.data_dir / 'pg'}", autocommit=True,
                           connect_timeout=2)


def child(running, marker: str) -> psutil.Process | None:
    """The supervisor's live child whose command line holds `marker` (None while there is none)."""
    found = []
    for process in psutil.Process(running.process.pid).children():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and marker in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            pass  # gone, or dead and not yet collected
    assert len(found) <= 1, found
    return found[0] if found else None


def fresh_heartbeat_since(running, moment) -> bool:
    """A worker sent a heartbeat well after `moment` (a dead worker's last one is older)."""
    try:
        with database(running) as conn:
            return conn.execute("SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > %s "
                                "+ interval '2 seconds'", (moment,)).fetchone()[0] > 0
    except psycopg.OperationalError:
        return False


def db_now(running):
    with database(running) as conn:
        return conn.execute("SELECT now()").fetchone()[0]


def healthy(running) -> bool:
    try:
        return requests.get(f"{running.url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def listener(running) -> requests.Session:
    """A browser session signed in as a demo listener (the round trip over HTTP)."""
    return http_sign_in(running.url)


def test_a_killed_worker_is_restarted_and_the_web_never_notices(running, listener):
    worker = child(running, "app worker")
    killed_at = db_now(running)
    started = time.monotonic()
    worker.send_signal(signal.SIGKILL)
    wait_for(lambda: fresh_heartbeat_since(running, killed_at), timeout=60, message="a new worker's heartbeat")
    seconds = time.monotonic() - started
    print(f"worker SIGKILL: a new worker working after {seconds:.1f} s")
    assert running.process.poll() is None and child(running, "app worker").pid != worker.pid
    assert listener.get(f"{running.url}/dashboard", timeout=10).status_code == 200
    assert "worker exited with status -9; starting it again" in running.output()


def test_a_killed_web_server_is_restarted(running, listener):
    web = child(running, "gunicorn")
    started = time.monotonic()
    os.killpg(web.pid, signal.SIGKILL)  # the master and its workers, as an OOM kill of the group would
    wait_for(lambda: (new := child(running, "gunicorn")) and new.pid != web.pid and healthy(running), timeout=60,
             message="/healthz from a new web server")
    seconds = time.monotonic() - started
    print(f"web SIGKILL: /healthz 200 again after {seconds:.1f} s")
    assert running.process.poll() is None
    assert listener.get(f"{running.url}/dashboard", timeout=10).status_code == 200  # the session survives


def test_a_killed_postgres_is_restarted_pages_say_503_meanwhile_and_polling_resumes(running, listener):
    wait_for(lambda: healthy(running), timeout=60, message="healthy before the test")
    postmaster = int((running.data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    killed_at = db_now(running)
    started = time.monotonic()
    os.kill(postmaster, signal.SIGKILL)

    pages = []
    while time.monotonic() - started < 60:
        response = listener.get(f"{running.url}/dashboard", timeout=10)
        pages.append((response.status_code, response.text))
        if response.status_code == 200 and healthy(running):
            break
    seconds = time.monotonic() - started
    codes = {code for code, _ in pages}
    print(f"postgres SIGKILL: pages 200 again after {seconds:.1f} s ({len(pages)} requests, statuses {sorted(codes)})")
    assert codes <= {200, 503}, codes  # never a 500
    outage = [text for code, text in pages if code == 503]
    assert outage and all("unavailable for a moment" in text for text in outage)
    assert pages[-1][0] == 200 and seconds < 60

    # The worker reconnects and polling goes on: make the listener due, and watch a poll land.
    wait_for(lambda: fresh_heartbeat_since(running, killed_at), timeout=60, message="the worker back")
    with database(running) as conn:
        before = conn.execute("SELECT last_success_at FROM archive_state").fetchone()[0]
        conn.execute("UPDATE archive_state SET next_poll_at = now(), dispatched_at = NULL")

    def polled_again():
        with database(running) as conn:
            last = conn.execute("SELECT last_success_at FROM archive_state").fetchone()[0]
        return last is not None and (before is None or last > before)

    wait_for(polled_again, timeout=60, message="a poll after the restart")
    print(f"postgres SIGKILL: polling resumed {time.monotonic() - started:.1f} s after the kill")
    assert running.process.poll() is None
    assert "the embedded Postgres is running again" in running.output()


def test_a_worker_outlives_a_long_database_outage(tmp_path):
    """The Procfile's worker on its own: the database gone for longer than its connection
    pool waits (30 s), then back; the same process carries on."""
    pgdata = tmp_path / "pg"
    url = ensure_server(pgdata, keep_running=True)
    upgrade(url)
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "s" * 32, "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
           "SPOTIFY_CLIENT_ID": "id", "SPOTIFY_CLIENT_SECRET": "secret", "WORKER_HEARTBEAT_SECONDS": "1"}
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env, cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        def heartbeat_age():
            try:
                with psycopg.connect(url, connect_timeout=2) as conn:
                    return conn.execute("SELECT extract(epoch FROM now() - max(last_heartbeat)) FROM "
                                        "procrastinate_workers").fetchone()[0]
            except psycopg.OperationalError:
                return None

        wait_for(lambda: (age := heartbeat_age()) is not None and age < 2, timeout=30, message="the worker up")
        pg_ctl(pgdata, "stop", "-m", "immediate")
        started = time.monotonic()
        wait_for(lambda: "the worker lost the database" in log.read_text(), timeout=90, message="the loss noticed")
        time.sleep(1)
        assert worker.poll() is None, log.read_text()[-3000:]
        restart(pgdata)
        wait_for(lambda: (age := heartbeat_age()) is not None and age < 2, timeout=60, message="the worker back")
        print(f"worker without its database for {time.monotonic() - started:.0f} s: reconnected, same process")
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0  # and a signal still stops it
    finally:
        if worker.poll() is None:
            worker.kill()
        pg_ctl(pgdata, "stop", "-m", "fast")


def test_a_restarted_demo_keeps_archiving_its_listeners(tmp_path_factory):
    """Restarting `run --demo` restarts the simulator; the tokens it issued must still work,
    or every demo user archived before stops being collected ('access token rejected')."""
    data_dir = tmp_path_factory.mktemp("demo-restart") / "var"
    first = RunningApp(data_dir)
    try:
        http_sign_in(first.url, "sim-acct-sam")
        before = wait_for(lambda: last_poll(first), timeout=90, message="the first poll")
    finally:
        assert first.stop() == 0, first.output()

    second = RunningApp(data_dir)
    try:
        with database(second) as conn:
            conn.execute("UPDATE archive_state SET next_poll_at = now(), dispatched_at = NULL")
        wait_for(lambda: (after := last_poll(second)) is not None and after > before, timeout=90,
                 message="a poll after the restart")
        with database(second) as conn:
            status, failures = conn.execute("SELECT u.status, a.consecutive_failures FROM users u "
                                            "JOIN archive_state a ON a.user_id = u.id").fetchone()
        assert (status, failures) == ("active", 0)
    finally:
        assert second.stop() == 0, second.output()


def last_poll(app):
    """The newest successful poll, None before the first (or while the database is away)."""
    try:
        with database(app) as conn:
            return conn.execute("SELECT max(last_success_at) FROM archive_state").fetchone()[0]
    except psycopg.OperationalError:
        return None


def test_the_embedded_postgres_runs_with_the_apps_tuning(pg_admin_url):
    """TUNING (embedded_pg.py) is in effect on a server started from a fresh data directory:
    written at its first start and applied by a restart before anyone else connected."""
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the tests run against a server this project did not start")
    with psycopg.connect(pg_admin_url) as conn:
        for name, value in TUNING.items():
            assert conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] == value, name


def test_an_embedded_postgres_that_cannot_start_tuned_starts_with_the_defaults(tmp_path, monkeypatch, caplog):
    """A setting the server cannot start with (here a library that does not exist; on a
    small machine, the memory): it starts with Postgres's defaults, says so, and is not
    tuned again at its next start."""
    from app import embedded_pg

    tuning = {"wal_buffers": "16MB", "shared_preload_libraries": "audiospective_no_such_library"}
    monkeypatch.setattr(embedded_pg, "TUNING", tuning)
    pgdata = tmp_path / "pg"
    url = ensure_server(pgdata, "tuned")
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW shared_preload_libraries").fetchone()[0] == ""
            assert conn.execute("SHOW wal_buffers").fetchone()[0] != "16MB"
        assert "did not start with" in caplog.text and (pgdata / embedded_pg.UNTUNED).exists()
        assert "audiospective_no_such_library" not in (pgdata / "postgresql.auto.conf").read_text()
        embedded_pg.stop(pgdata)
        # Started again by a later process (this one's handle still counts it as running).
        later = subprocess.run([sys.executable, "-c", (
            "import sys; from pathlib import Path; from app import embedded_pg; "
            f"embedded_pg.TUNING = {tuning!r}; embedded_pg.ensure_server(Path(sys.argv[1]), 'tuned'); "
            "embedded_pg.stop(Path(sys.argv[1]))"), str(pgdata)],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert later.returncode == 0, later.stderr[-2000:]
        assert "did not start with" not in later.stderr
        assert "audiospective_no_such_library" not in (pgdata / "postgresql.auto.conf").read_text()
    finally:
        embedded_pg.stop(pgdata)
