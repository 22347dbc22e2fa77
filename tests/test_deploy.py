"""A deploy as a Heroku-style host makes it, on the smallest Postgres plan.

The app is installed into a new virtualenv strictly from requirements.txt (hash-checked,
no resolver: what the Python buildpack does), the Procfile's release command migrates a
Postgres started with max_connections = 20, and honcho starts the Procfile's web and
worker with only PORT, DATABASE_URL and the app.json variables set, every setting at its
default. Then people sign in through the simulator, one of them imports a 100,000-row
history, polls run, and 8 clients load pages as browsers do, all at once; meanwhile
pg_stat_activity and the processes' memory are sampled. Prints the peaks.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import venv
from collections import Counter
from pathlib import Path

import psutil
import psycopg
import pytest
import requests

from app import db
from app.config import ROOT
from app.simulator.export import synthetic_history, synthetic_zip
from conftest import TcpPostgres, free_port, freeze, http_sign_in, procfile, wait_for, worker_alive

MAX_CONNECTIONS = 20
ROLE = "app_role"  # not a superuser, as on a managed plan
ACCOUNTS = ["sim-acct-riley", "sim-acct-sam", "sim-acct-jo", "sim-acct-max", "sim-acct-00001", "sim-acct-00002"]
IMPORT_ROWS = 100_000
PAGE_CLIENTS = 8


@pytest.fixture(scope="module")
def locked_venv(tmp_path_factory) -> Path:
    """A new virtualenv with requirements.txt installed as a buildpack would: pinned and
    hash-checked (pip refuses any package the file does not pin with a hash)."""
    path = tmp_path_factory.mktemp("slug") / "venv"
    venv.create(path, with_pip=True)
    # pip meets PyPI's TLS certificates with the real clock, also when the suite runs under
    # libfaketime a year ahead (README, Development): certificates are no test of ours.
    real_clock = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")}
    install = subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--require-hashes",
                              "-r", str(ROOT / "requirements.txt")], capture_output=True, text=True, timeout=600,
                             env=real_clock)
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run([str(path / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert not (path / "bin" / "pytest").exists() and not (path / "bin" / "audiospective").exists()
    return path


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory):
    """Postgres with 20 connections, one of them kept for a superuser (the sampler here,
    `heroku pg:psql` there): the app's role has 19."""
    server = TcpPostgres(tmp_path_factory.mktemp("plan-pg"), max_connections=str(MAX_CONNECTIONS),
                         superuser_reserved_connections="1", reserved_connections="0")
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {ROLE} LOGIN")
        conn.execute(f"CREATE DATABASE deployed OWNER {ROLE}")
    yield server
    server.stop()


@pytest.mark.timeout(480)
def test_a_locked_install_on_a_20_connection_plan_serves_imports_polls_and_pages(locked_venv, small_plan, simulator,
                                                                                  tmp_path):
    freeze(simulator)
    simulator.world.config.access_token_ttl_s = 86_400
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    database_url = f"postgres://{ROLE}@127.0.0.1:{small_plan.port}/deployed"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPOTIFY_", "DATABASE_URL", "PORT", "WEB_", "WORKER_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(PATH=f"{locked_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", PORT=str(port),
               DATABASE_URL=database_url,
               # What app.json's generator gives: 64 hex digits each, not a Fernet key.
               SECRET_KEY=secrets.token_hex(32), TOKEN_ENCRYPTION_KEY=secrets.token_hex(32),
               SPOTIFY_CLIENT_ID="audiospective-demo", SPOTIFY_CLIENT_SECRET="audiospective-demo-secret",
               SPOTIFY_ACCOUNTS_URL=simulator.url, SPOTIFY_API_URL=simulator.url,
               SPOTIFY_REDIRECT_URI=f"{base}/auth/callback", AUDIOSPECTIVE_DATA_DIR=str(tmp_path / "var"))
    commands = procfile()
    release = subprocess.run(["sh", "-c", commands["release"]], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=180)
    assert release.returncode == 0, release.stderr[-3000:]

    log = tmp_path / "honcho.log"
    with open(log, "w") as out:
        honcho = subprocess.Popen([str(Path(sys.executable).with_name("honcho")), "start", "-f", "Procfile", "web",
                                   "worker"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    sampler = Sampler(small_plan.url("deployed"), honcho.pid)
    try:
        wait_for(lambda: worker_alive(base) or honcho.poll() is not None, timeout=120, message="web and worker up",
                 explain=log.read_text)
        assert honcho.poll() is None, log.read_text()[-3000:]
        for process in sampler.processes():  # each loads its compiled libraries from the slug, not from .venv
            assert any(m.path.startswith(str(locked_venv)) for m in process.memory_maps()), process.cmdline()
        sampler.start()
        people = [http_sign_in(base, account) for account in ACCOUNTS]

        history = tmp_path / "my_spotify_data.zip"
        synthetic_zip(history, synthetic_history(IMPORT_ROWS, rows_per_file=25_000))
        upload = upload_file(people[0], base, history)
        import_id = int(re.search(r"/import/(\d+)$", upload.headers["Location"]).group(1))

        statuses: Counter = Counter()
        stop = threading.Event()
        clients = [threading.Thread(target=browse, args=(http_sign_in(base, ACCOUNTS[n % len(ACCOUNTS)]), base, stop,
                                                         statuses)) for n in range(PAGE_CLIENTS)]
        for client in clients:
            client.start()
        with psycopg.connect(small_plan.url("deployed"), autocommit=True) as conn:
            polls_before = polls(conn)
            started = time.monotonic()
            # Every user due again every few seconds: the worker's dispatcher (every 20 s)
            # keeps finding polls to run while the import and the page loads go on.
            while time.monotonic() - started < 150:
                conn.execute("UPDATE archive_state SET next_poll_at = now(), dispatched_at = NULL")
                state = conn.execute("SELECT status, error, report->>'imported' FROM imports WHERE id = %s",
                                     (import_id,)).fetchone()
                if state[0] in ("done", "failed") and polls(conn) - polls_before >= 2 \
                        and time.monotonic() - started > 30:
                    break
                time.sleep(2)
            polls_done = polls(conn) - polls_before
        stop.set()
        for client in clients:
            client.join(60)
        sampler.stop()
        output = log.read_text()
        print(f"deploy: {PAGE_CLIENTS} clients loaded {sum(statuses.values())} pages ({dict(statuses)}) in "
              f"{time.monotonic() - started:.0f} s while {IMPORT_ROWS:,} rows were imported ({state[0]}, "
              f"{state[2]} plays added) and {polls_done} rounds of polls of {len(ACCOUNTS)} people ran; database connections at most "
              f"{sampler.peak_connections} of {MAX_CONNECTIONS} (budget {budget()}); resident memory at most: web "
              f"{sampler.peak_mb['web']:.0f} MB (gunicorn master and its workers), worker {sampler.peak_mb['worker']:.0f} MB")
        assert state[0] == "done", state
        assert polls_done >= 2
        assert set(statuses) == {200}, statuses
        assert sampler.peak_connections <= budget() <= MAX_CONNECTIONS - 1
        for refusal in ("too many clients", "remaining connection slots", "no free connection slot",
                        "connection failed", "Traceback"):
            assert refusal not in output, output[output.find(refusal) - 2000:][:4000]
        assert max(sampler.peak_mb.values()) < 512
        assert honcho.poll() is None
    finally:
        sampler.stop()
        os.killpg(honcho.pid, signal.SIGTERM)
        honcho.wait(60)


def budget() -> int:
    """README's formula at the defaults: one web dyno of WEB_CONCURRENCY 2 x (WEB_THREADS 3 + 2)
    and one worker of 2 x WORKER_CONCURRENCY 2 + 4."""
    return 2 * db.web_connections(3) + db.worker_connections(2)


def polls(conn) -> int:
    """Poll jobs completed (each polls every user due: here, all of them)."""
    return conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'jobs.archival.poll_batch' "
                        "AND status = 'succeeded'").fetchone()[0]


def upload_file(session: requests.Session, base: str, path: Path) -> requests.Response:
    page = session.get(f"{base}/import", timeout=30).text
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    with open(path, "rb") as data:
        response = session.post(f"{base}/import", data={"csrf_token": token, "rule": "default"},
                                files={"files": (path.name, data, "application/zip")}, allow_redirects=False,
                                headers={"Origin": base}, timeout=120)
    assert response.status_code == 303, response.text[:500]
    return response


def browse(session: requests.Session, base: str, stop: threading.Event, statuses: Counter) -> None:
    """What a browser does: the dashboard, then every fragment it loads with HTMX; History;
    the Import page."""
    while not stop.is_set():
        dashboard = session.get(f"{base}/dashboard", timeout=60)
        statuses[dashboard.status_code] += 1
        fragments = {html.unescape(u) for u in re.findall(r'hx-get="([^"]+)"', dashboard.text)}
        for path in sorted(fragments) + ["/history", "/import"]:
            if stop.is_set():
                return
            statuses[session.get(f"{base}{path}", headers={"HX-Request": "true"}, timeout=60).status_code] += 1


class Sampler:
    """Samples, every 0.1 s, the app role's connections and the resident memory of the
    web processes (gunicorn's master and workers) and of the worker."""

    def __init__(self, admin_url: str, honcho_pid: int):
        self.admin_url, self.honcho_pid = admin_url, honcho_pid
        self.peak_connections = 0
        self.peak_mb = {"web": 0.0, "worker": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def processes(self) -> list[psutil.Process]:
        return [p for p in psutil.Process(self.honcho_pid).children(recursive=True)
                if p.name() not in ("sh", "dash", "bash") and "honcho" not in " ".join(p.cmdline())]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            while not self._stop.is_set():
                count = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (ROLE,)).fetchone()[0]
                self.peak_connections = max(self.peak_connections, count)
                memory = {"web": 0, "worker": 0}
                for process in self.processes():
                    try:
                        kind = "web" if "wsgi:asgi" in " ".join(process.cmdline()) else "worker"
                        memory[kind] += process.memory_info().rss
                    except psutil.Error:
                        continue
                for kind, rss in memory.items():
                    self.peak_mb[kind] = max(self.peak_mb[kind], rss / 1024**2)
                time.sleep(0.1)
