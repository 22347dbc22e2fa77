"""The real procrastinate worker, as a separate process, keeps the queue healthy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from app.config import ROOT
from conftest import app_environ


def wait_for(predicate, timeout=40.0, interval=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_jobs_of_a_dead_worker_are_retried_and_finish(database_url, simulator, db_conn):
    # A worker that vanished (SIGKILL, lost machine) while holding a job.
    dead = db_conn.execute(
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '10 minutes') RETURNING id"
    ).fetchone()[0]
    job = db_conn.execute(
        """INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, worker_id)
           VALUES ('maintenance', 'jobs.maintenance.prune_finished_jobs', '{"timestamp": 0}', 'doing', %s)
           RETURNING id""", (dead,)).fetchone()[0]

    env = {**os.environ, **app_environ(database_url, simulator.url)}
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status = wait_for(lambda: db_conn.execute(
            "SELECT status FROM procrastinate_jobs WHERE id = %s AND status = 'succeeded'", (job,)).fetchone())
        assert status == ("succeeded",)
        assert db_conn.execute("SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - "
                               "interval '30 seconds'").fetchone()[0] == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert f"retrying stalled job {job}" in output
    # A clean stop unregisters the worker.
    assert db_conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0] == 0
