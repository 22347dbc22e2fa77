"""Fault drills: the app's real processes meet a database that crashes in the middle of an
import, a day-long 429 from Spotify and a mail server that is away while mail is due.
Each prints what it measured: seconds to recovery, plays lost and duplicated, jobs lost.
(Processes killed under `audiospective run`: tests/test_supervision.py.)"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import date, timedelta

import psycopg

from app import create_app
from app.config import SmtpSettings, load_settings
from app.embedded_pg import ensure_server, restart
from app.imports.service import create_import, queue_import
from app.migrate import upgrade
from app.simulator.export import synthetic_history, synthetic_zip
from conftest import WorkerProcess, add_users, app_environ, free_port, freeze, pg_ctl, wait_for
from test_email import smtp  # noqa: F401 - the fixture is shared


def _jobs(conn, task: str | None = None) -> dict[str, int]:
    """Jobs by status (of one task); the periodic ones come and go while a drill runs."""
    return dict(conn.execute("SELECT status, count(*) FROM procrastinate_jobs WHERE %(task)s::text IS NULL "
                             "OR task_name = %(task)s GROUP BY status", {"task": task}).fetchall())


def merging(url: str) -> bool:
    """The import's merge is running (its statements work on the import_rows table)."""
    with psycopg.connect(url, connect_timeout=2) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                            "AND pid <> pg_backend_pid() AND query ILIKE '%import_rows%'").fetchone()[0] > 0


def test_a_database_crash_in_the_middle_of_an_import(tmp_path, simulator):
    """Postgres stops without a checkpoint (as after a kill -9 or a power cut) while the
    worker is merging a 150,000-row import, and comes back a few seconds later: the
    worker waits, the interrupted job is run again, and the archive ends up with every play
    once (one transaction: nothing of the first attempt was kept)."""
    pgdata = tmp_path / "pg"
    url = ensure_server(pgdata, keep_running=True)
    try:
        upgrade(url)
        env = app_environ(url, simulator.url, WORKER_HEARTBEAT_SECONDS="1", WORKER_STALLED_AFTER_SECONDS="5")
        app = create_app(settings=load_settings(env))
        database = app.extensions["database"]
        uid = add_users(app, simulator, ["sim-acct-sam"])["sim-acct-sam"]
        files = synthetic_history(150_000, years=3, tracks=20_000, artists=4_000, seed=3)
        upload = tmp_path / "my_spotify_data.zip"
        synthetic_zip(upload, files)
        with database.session() as session, open(upload, "rb") as stream:
            record = create_import(session, uid, [(upload.name, stream)], "default")
            queue_import(session, record)
            import_id = record.id
        database.dispose()

        def status():
            try:
                with psycopg.connect(url, connect_timeout=2) as conn:
                    return conn.execute("SELECT status FROM imports WHERE id = %s", (import_id,)).fetchone()[0]
            except psycopg.OperationalError:
                return None

        worker = WorkerProcess(env, tmp_path / "worker.log")
        try:
            wait_for(lambda: status() == "running", timeout=60, message="the import started",
                     explain=worker.output)
            wait_for(lambda: merging(url), timeout=60, message="the merge under way", interval=0.05)
            seen = len(worker.output())
            pg_ctl(pgdata, "stop", "-m", "immediate")
            crashed = time.monotonic()
            wait_for(lambda: "OperationalError" in worker.output()[seen:], timeout=60, message="the loss noticed",
                     explain=worker.output)
            restart(pgdata)
            wait_for(lambda: status() in ("done", "failed"), timeout=150, message="the import finished",
                     explain=lambda: worker.output()[-4000:])
            seconds = time.monotonic() - crashed
            with psycopg.connect(url) as conn:
                report, error = conn.execute("SELECT report, error FROM imports WHERE id = %s",
                                             (import_id,)).fetchone()
                # The worker polls the user too: their plays beside the imported ones.
                imported, plays, distinct, rolled = conn.execute("""
                    SELECT count(*) FILTER (WHERE source = 2), count(*), count(DISTINCT (played_at, track_id)),
                           (SELECT sum(plays) FROM track_totals WHERE user_id = %(uid)s)
                      FROM plays WHERE user_id = %(uid)s""", {"uid": uid}).fetchone()
                jobs = _jobs(conn, "jobs.imports.import_export")
                failed = _jobs(conn).get("failed", 0)
            assert status() == "done", error
            assert worker.process.poll() is None, "the worker must wait for the database, not exit"
        finally:
            worker.stop()
        rows = sum(len(part) for part in files)
        lost = report["imported"] - imported
        print(f"postgres crash during an import: done {seconds:.1f} s after the crash; {imported:,} plays of "
              f"{rows:,} rows, plays lost {lost}, duplicated {plays - distinct}, import job {jobs}, "
              f"failed jobs {failed}")
        assert report["rows"] == rows and report["already_in_archive"] == 0
        assert lost == 0 and imported > 100_000 and plays == distinct == rolled
        assert jobs == {"succeeded": 1} and failed == 0, (jobs, failed)  # run again, once, and done
    finally:
        pg_ctl(pgdata, "stop", "-m", "fast")


def test_a_day_long_429_pauses_collection_and_says_until_when_and_nobody_is_blamed(app, simulator, client, db_conn):
    """Spotify answers 429 with Retry-After: 86400 (a development-mode app over its daily
    quota): every process stops asking until then; the archive-health panel says when
    collection resumes; nobody is deactivated, marked failing or mailed, even 13 hours of
    (virtual) time later when alerts would go out for a real failure."""
    from app.alerts.service import check
    from app.archival.poll import Archivist, poll_user
    from app.email.outbox import mail_context
    from conftest import REFERENCE_MS, sign_in

    freeze(simulator)
    users = add_users(app, simulator, ["sim-acct-sam", "sim-acct-riley"])
    db_conn.execute("UPDATE users SET email = 'x' || id || '@example.org', email_verified_at = now()")
    simulator.call("POST", "/_sim/faults", json={"account": None, "rules": [
        {"kind": "rate_limit", "retry_after": 86_400, "endpoints": ["recently_played"]}]})
    archivist = Archivist.from_app(app)
    outcomes = [poll_user(archivist, uid).outcome for uid in users.values()]
    requests_seen = simulator.stats().get("api:recently_played", 0)
    paused_until = db_conn.execute("SELECT paused_until FROM api_budget").fetchone()[0]
    assert outcomes == ["paused", "paused"] and requests_seen == 1  # the second user's poll never asked
    assert timedelta(hours=23, minutes=59) < paused_until - db_conn.execute("SELECT now()").fetchone()[0]

    sign_in(client, "sim-acct-sam")
    panel = client.get("/dashboard/archive-health").get_data(as_text=True)
    shown = re.search(r"collection resumes at\s+(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})", panel)
    assert shown and "Spotify asked this instance to slow down" in panel, panel
    assert abs((date.fromisoformat(shown.group(1)) - paused_until.date()).days) <= 1  # in the user's zone

    freeze(simulator, REFERENCE_MS + 13 * 3_600_000)
    with mail_context(app), app.extensions["database"].session() as session:
        done = check(session, secret=app.config["SETTINGS"].secret_key, now=app.extensions["clock"]())
    assert [poll_user(archivist, uid).outcome for uid in users.values()] == ["paused", "paused"]
    statuses = {s for (s,) in db_conn.execute("SELECT status FROM users")}
    failures = db_conn.execute("SELECT coalesce(max(consecutive_failures), 0) FROM archive_state").fetchone()[0]
    mails = db_conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    print(f"429 Retry-After 86400: requests to Spotify after the first 429: "
          f"{simulator.stats().get('api:recently_played', 0) - requests_seen}; users deactivated 0 of "
          f"{len(users)} (statuses {sorted(statuses)}), failures counted {failures}, mails {mails}")
    assert statuses == {"active"} and failures == 0 and mails == 0 and done["opened"] == 0
    assert simulator.stats().get("api:recently_played", 0) == requests_seen


def test_mail_due_while_the_mail_server_is_away_is_sent_once_when_it_returns(app, simulator, db_conn, smtp):  # noqa: F811
    """Alerts and export-ready mails queued while nothing listens on the SMTP port: every
    delivery run in the outage leaves them waiting (none lost, none failed for good);
    when the server is back, each arrives exactly once, alerts first."""
    from app.email.delivery import deliver_due
    from app.email.outbox import mail_context, queue_email

    freeze(simulator)
    uid = add_users(app, simulator, ["sim-acct-sam"])["sim-acct-sam"]
    database, clock = app.extensions["database"], app.extensions["clock"]
    with mail_context(app), database.session() as session:
        for n in range(6):
            queue_email(session, key=f"drill-alert:{n}", user_id=uid, to="sam@example.org", subject=f"Alert {n}",
                        template="confirm_email", now=clock(), priority=0, name="Sam", link="http://x/y",
                        valid_hours=48)
            queue_email(session, key=f"drill-export:{n}", user_id=uid, to="sam@example.org", subject=f"Export {n}",
                        template="confirm_email", now=clock(), name="Sam", link="http://x/y", valid_hours=48)
    settings = app.config["SETTINGS"]
    away = dataclasses.replace(settings, smtp=SmtpSettings(host="127.0.0.1", port=free_port(), tls="opportunistic"))
    moment = clock()
    runs = 0
    for _ in range(8):  # every run of the job during a few virtual hours of outage
        moment += timedelta(minutes=30)
        deliver_due(database, away, lambda: moment)
        runs += 1
    waiting, failed = db_conn.execute("SELECT count(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL), "
                                      "count(*) FILTER (WHERE failed_at IS NOT NULL) FROM outbox").fetchone()
    assert (waiting, failed, smtp.messages) == (12, 0, [])
    back = dataclasses.replace(settings, smtp=smtp.settings)
    started = time.monotonic()
    for _ in range(5):  # the next runs after the return, each as late as the longest back-off
        moment += timedelta(hours=2)
        deliver_due(database, back, lambda: moment)
    subjects = [m["Subject"] for m in smtp.messages]
    print(f"SMTP away for {runs} delivery runs: 12 mails waiting, 0 failed; back: {len(subjects)} delivered "
          f"in {time.monotonic() - started:.1f} s, duplicates {len(subjects) - len(set(subjects))}, lost "
          f"{12 - len(set(subjects))}")
    assert sorted(subjects) == sorted([f"Alert {n}" for n in range(6)] + [f"Export {n}" for n in range(6)])
    assert subjects[:6] == [f"Alert {n}" for n in range(6)]  # alerts first


def test_the_procfile_processes_under_honcho_outlive_a_dead_web_worker_and_a_database_crash(tmp_path, simulator):
    """The Procfile's web and worker, started by honcho as a Procfile host would: a web
    worker process SIGKILLed is replaced by gunicorn while the site keeps answering; a
    database crash gives 503 pages (never 500), then the worker reconnects and polling
    resumes with no play lost. (A process that exits ends honcho itself, by its design; a
    Procfile host's process manager restarts it: `audiospective run` does, see
    test_supervision.py.)"""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import psutil
    import requests
    from cryptography.fernet import Fernet

    from app.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, ROOT
    from conftest import REFERENCE_MS, archived, http_sign_in, window, worker_alive

    freeze(simulator)
    simulator.world.config.access_token_ttl_s = 86_400  # outlive the simulated hours
    pgdata = tmp_path / "pg"
    url = ensure_server(pgdata, keep_running=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "DATABASE_URL", "PORT"))}
    env.update(DATABASE_URL=url, PORT=str(port), WEB_CONCURRENCY="2", SECRET_KEY="drill-" + "k" * 32,
               TOKEN_ENCRYPTION_KEY=Fernet.generate_key().decode(), SPOTIFY_CLIENT_ID=DEMO_CLIENT_ID,
               SPOTIFY_CLIENT_SECRET=DEMO_CLIENT_SECRET, SPOTIFY_ACCOUNTS_URL=simulator.url,
               SPOTIFY_API_URL=simulator.url,
               SPOTIFY_REDIRECT_URI=f"{base}/auth/callback", WORKER_HEARTBEAT_SECONDS="1",
               AUDIOSPECTIVE_DATA_DIR=str(tmp_path / "var"),
               # gunicorn and audiospective, as the Procfile names them
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    release = subprocess.run([sys.executable, "-m", "app", "db", "upgrade"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stderr
    honcho = Path(sys.executable).with_name("honcho")
    log = tmp_path / "honcho.log"
    with open(log, "w") as out:
        process = subprocess.Popen([str(honcho), "start", "-f", "Procfile", "web", "worker"], env=env, cwd=ROOT,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def status(path: str = "/healthz", session=requests) -> int | None:
        try:
            return session.get(f"{base}{path}", timeout=5).status_code
        except requests.RequestException:
            return None

    try:
        wait_for(lambda: (status() == 200 and worker_alive(base)) or process.poll() is not None, timeout=90,
                 message="web and worker up", explain=log.read_text)
        assert process.poll() is None, log.read_text()
        listener = http_sign_in(base, "sim-acct-sam")
        with psycopg.connect(url) as conn:
            uid = conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
        wait_for(lambda: _last_poll(url), timeout=60, message="the first poll", explain=log.read_text)

        # A web worker process killed: gunicorn's master starts another; answers meanwhile.
        gunicorns = [p for p in psutil.Process(process.pid).children(recursive=True)
                     if "wsgi:asgi" in " ".join(p.cmdline()) and p.name() not in ("sh", "dash", "bash")]
        master = next(p for p in gunicorns if p.parent().pid not in {g.pid for g in gunicorns})
        victim = master.children()[0]
        started = time.monotonic()
        victim.send_signal(signal.SIGKILL)

        def dead() -> bool:  # its sockets closed: a request sent sooner dies with it, as it would anywhere
            try:
                return victim.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_for(dead, timeout=60, message="the killed web worker gone")
        answers = [status("/dashboard", listener) for _ in range(20)]

        def replaced() -> bool:
            try:
                return len([c for c in master.children() if c.pid != victim.pid and c.is_running()]) == 2
            except psutil.Error:
                return False  # the killed one, while gunicorn reaps it

        wait_for(replaced, timeout=60, message="a new web worker")
        web_s = time.monotonic() - started
        assert set(answers) == {200}, answers

        # The database crashes (no checkpoint, as a kill -9 would leave it) and comes back.
        pg_ctl(pgdata, "stop", "-m", "immediate")
        started = time.monotonic()
        outage = [status("/dashboard", listener) for _ in range(5)]
        after = freeze(simulator, REFERENCE_MS + 2 * 3_600_000)  # two hours of listening during the outage
        restart(pgdata)
        wait_for(lambda: status("/dashboard", listener) == 200, timeout=60, message="pages again")
        pages_s = time.monotonic() - started
        with psycopg.connect(url, autocommit=True) as conn:
            before = conn.execute("SELECT last_success_at FROM archive_state").fetchone()[0]
            conn.execute("UPDATE archive_state SET next_poll_at = now(), dispatched_at = NULL")
        wait_for(lambda: (last := _last_poll(url)) and last > before, timeout=90, message="a poll after the crash",
                 explain=log.read_text)
        poll_s = time.monotonic() - started
        with psycopg.connect(url) as conn:
            have = archived(conn, uid)
            jobs = _jobs(conn)
        expected = window(simulator, "sim-acct-sam", after)
        lost = expected - have
        print(f"honcho: web worker SIGKILL -> replaced in {web_s:.1f} s, 20 of 20 pages 200 meanwhile; postgres "
              f"crash -> pages {sorted(set(outage))} during the outage, 200 after {pages_s:.1f} s, polling again "
              f"after {poll_s:.1f} s; plays lost {len(lost)} of {len(expected)} in Spotify's window; "
              f"failed jobs {jobs.get('failed', 0)}")
        assert set(outage) <= {503} and not lost and len(expected) == 50
        assert process.poll() is None, log.read_text()[-3000:]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        pg_ctl(pgdata, "stop", "-m", "fast")


def _last_poll(url: str):
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute("SELECT max(last_success_at) FROM archive_state").fetchone()[0]
    except psycopg.OperationalError:
        return None
