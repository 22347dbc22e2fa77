"""The job queue: procrastinate on the app's own Postgres, and the one way code defers work.

* `app` is the procrastinate App. The task functions live in `jobs/` (thin wrappers that
  call domain code) and register themselves on it; a worker loads them by module name
  (`TASK_MODULES`, procrastinate's `import_paths`), so nothing under `app/` imports
  `jobs/`, and the web process never loads them at all.
* Domain code defers by task name: `defer(POLL_BATCH, session, {...})`. A `Task` below is
  the contract between the two sides (name, queue, priority). Task names are stored in
  every queued job, so they never change: a renamed task would orphan the jobs already
  waiting under the old name.
* `defer` writes the jobs on the caller's connection, inside its transaction: they exist
  exactly when the caller's other writes commit (a claimed poll and its job, an upload
  and its import), and a rollback takes both away.
* Each process binds the queue to its database and Flask app once (`bind`); tasks reach
  that app with `flask_app()` for configuration, the database and templates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import procrastinate
import procrastinate.exceptions
import procrastinate.manager
import procrastinate.tasks
from flask import Flask
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.orm import Session

from .db import DATABASE_UNAVAILABLE, QUEUE_POOL_SIZE

log = logging.getLogger(__name__)

TASK_MODULES = ["jobs.maintenance", "jobs.archival", "jobs.imports", "jobs.exports", "jobs.mail", "jobs.membership",
                "jobs.listens"]
RECONNECT_MAX_S = 30  # a worker that lost the database tries again at least this often

# Poll jobs run first: a late poll can lose plays for good. Enrichment runs last.
POLL_PRIORITY = 10
ENRICH_PRIORITY = -10


# A job whose database went away under it (a restart, a failover) runs again when it is
# back: an import's or export's work is one transaction, so nothing of the attempt stays.
# 2, 4, 8, 16, 32 s apart; a longer outage leaves the job to the stalled-job check.
DATABASE_RETRY = procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2,
                                             retry_exceptions=set(DATABASE_UNAVAILABLE))


class Task(NamedTuple):
    name: str  # stored in queued jobs: never rename
    queue: str
    priority: int = 0
    retry: procrastinate.RetryStrategy | None = None

    def options(self) -> dict[str, Any]:
        """What jobs/ passes to `app.task(...)` for this task."""
        options = {"name": self.name, "queue": self.queue, "priority": self.priority}
        return options | ({"retry": self.retry} if self.retry else {})


# Tasks that domain code defers. (Periodic tasks are deferred by the worker itself.)
POLL_BATCH = Task("jobs.archival.poll_batch", "archival", POLL_PRIORITY)
ENRICH_BATCH = Task("jobs.archival.enrich_batch", "enrichment", ENRICH_PRIORITY)
IMPORT = Task("jobs.imports.import_export", "imports", retry=DATABASE_RETRY)
EXPORT = Task("jobs.exports.write_export", "exports", retry=DATABASE_RETRY)
DELIVER_MAIL = Task("jobs.mail.deliver_mail", "mail", 5)
# Listens submitted through the API, merged per user (app/api/ingest.py); right after polls.
MERGE_LISTENS = Task("jobs.listens.merge_listens", "listens", 5, retry=DATABASE_RETRY)

# Deferring with a `queueing_lock` when a job with that lock is already waiting.
AlreadyEnqueued = procrastinate.exceptions.AlreadyEnqueued

app = procrastinate.App(connector=procrastinate.PsycopgConnector(), import_paths=TASK_MODULES)

_flask_app: Flask | None = None

# Only ever used with an explicit connection (the caller's), so it is never opened.
_sync_job_manager = procrastinate.manager.JobManager(connector=procrastinate.SyncPsycopgConnector())


def defer(task: Task, connection: Session | SAConnection | Any, *task_kwargs: dict, **options: Any) -> list[int]:
    """Defer one job per `task_kwargs` on the caller's connection (a SQLAlchemy session or
    connection, or a psycopg connection), in its transaction. `options` are procrastinate's
    (`lock`, `queueing_lock`, `schedule_at`, …). Returns the job ids.

    procrastinate's own path would, inside a running worker, hand a sync connection to its
    async connector, which cannot use it; and `App.configure_task` would import every task
    module into the caller's process."""
    deferrer = procrastinate.tasks.configure_task(
        name=task.name, job_manager=_sync_job_manager, connection=_driver_connection(connection),
        **{"queue": task.queue, "priority": task.priority, **options})
    return deferrer.batch_defer(*task_kwargs)


def _driver_connection(connection: Any) -> Any:
    if isinstance(connection, Session):
        connection = connection.connection()
    if isinstance(connection, SAConnection):
        connection = connection.connection.driver_connection
    return connection


def bind(flask_app: Flask, *, pool_size: int = QUEUE_POOL_SIZE) -> procrastinate.App:
    """Point the queue at this process's database and remember its Flask app for tasks.

    The connector is bound at run time, not import time, because the database URL comes
    from validated configuration and, locally, from the embedded server it may start."""
    global _flask_app
    _flask_app = flask_app
    database = flask_app.extensions["database"]
    connector = procrastinate.PsycopgConnector(conninfo=database.url, min_size=1, max_size=pool_size)
    # What App.replace_connector does, kept for the life of the process.
    app.connector = connector
    app.job_manager.connector = connector
    return app


def run_worker(flask_app: Flask, *, concurrency: int, queues: list[str] | None, name: str) -> None:
    """Run a procrastinate worker until SIGINT/SIGTERM, and only then stop.

    Losing the database is not the end of it. procrastinate ends its worker when the
    database goes (with a ConnectorException, or quietly when its listener fails); this
    waits (1 s, doubling up to RECONNECT_MAX_S) and starts it again, so a database
    restart or a network blip never leaves a host without its worker (on Heroku an
    exiting worker is a crash loop). Jobs that were running then are retried as stalled.
    Only a signal stops it: procrastinate's own signal handling is off, and a signal
    cancels the running worker, which procrastinate turns into a graceful stop."""
    settings = flask_app.config["SETTINGS"]
    queue_app = bind(flask_app)

    async def run_once() -> None:
        async with queue_app.open_async():
            await queue_app.run_worker_async(
                concurrency=concurrency, queues=queues, name=name, install_signal_handlers=False,
                update_heartbeat_interval=settings.worker_heartbeat_s,
                stalled_worker_timeout=settings.stalled_after_s,
            )

    async def work() -> None:
        loop = asyncio.get_running_loop()
        # Our tasks are synchronous: procrastinate runs them on the loop's default thread
        # pool, which asyncio sizes by CPU count, not by the worker's concurrency.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=concurrency))
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        delay = 1.0
        while not stop.is_set():
            started = time.monotonic()
            worker = asyncio.create_task(run_once())
            await asyncio.wait({worker, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker
                break
            error = worker.exception()
            if time.monotonic() - started > 5 * RECONNECT_MAX_S:
                delay = 1.0  # it had been working for a while: this is a new outage
            why = str(getattr(error, "__cause__", None) or error or "it stopped").strip().splitlines()[0]
            if _database_lost(error):
                log.warning("the worker lost the database (%s); starting it again in %.0f s", why, delay)
            else:  # a bug (a task module that does not import, say): not to be mistaken for an outage
                log.error("the worker stopped on an error (%s: %s); starting it again in %.0f s",
                          type(error).__name__, why, delay, exc_info=error)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    asyncio.run(work())


def _database_lost(error: BaseException | None) -> bool:
    """Whether the worker ended because of the database (procrastinate ends quietly, or
    with a ConnectorException, when it goes), rather than on an error of its own."""
    return error is None or isinstance(error, (procrastinate.exceptions.ConnectorException, *DATABASE_UNAVAILABLE)) \
        or isinstance(error.__cause__, DATABASE_UNAVAILABLE)


def flask_app() -> Flask:
    if _flask_app is None:
        raise RuntimeError("app.queue.bind(flask_app) was not called in this process")
    return _flask_app


def retry_job(session, job_id: int, *, now) -> bool:
    """Run a failed (or stalled) job again, now: procrastinate's own SQL function, so the
    queue's rules hold. False if there is no such job in a state that can be retried."""
    import sqlalchemy as sa

    exists = session.scalar(sa.text("SELECT count(*) FROM procrastinate_jobs WHERE id = :id "
                                    "AND status IN ('failed', 'doing')"), {"id": job_id})
    if not exists:
        return False
    session.execute(sa.text("SELECT procrastinate_retry_job_v2(:id, :at, NULL, NULL, NULL)"), {"id": job_id, "at": now})
    return True
