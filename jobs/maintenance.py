"""Keeping the queue itself healthy."""

from __future__ import annotations

import asyncio
import logging

from procrastinate import JobContext
from procrastinate.jobs import Status

from app.exports.service import abandon_export
from app.imports.service import abandon_import
from app.queue import EXPORT, IMPORT, app, flask_app

log = logging.getLogger(__name__)

STALLED_RETRIES = 1  # a job whose worker dies twice is not tried a third time


@app.periodic(cron="* * * * * */10", periodic_id="retry_stalled_jobs")
@app.task(name="jobs.maintenance.retry_stalled_jobs", queue="maintenance", queueing_lock="retry_stalled_jobs",
          pass_context=True, priority=20)
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """Requeue jobs whose worker stopped sending heartbeats (SIGKILL, a lost machine):
    otherwise they stay `doing` for ever. Silence for WORKER_STALLED_AFTER_SECONDS (60 s by
    default, six missed heartbeats) means the worker is gone.

    A job is retried once. If its worker dies on it again, the job is what kills workers
    (an upload that exhausts memory, say): it is failed, and the work it stood for is told
    why, instead of taking down worker after worker in a loop."""
    manager = context.app.job_manager
    stalled_after = flask_app().config["SETTINGS"].stalled_after_s
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after)
    for job in stalled:
        if job.attempts >= STALLED_RETRIES:
            log.error("job %s (%s) stalled again (worker %s is gone): failing it", job.id, job.task_name,
                      job.worker_id)
            await manager.finish_job(job, status=Status.FAILED, delete_job=False)
            if job.task_name in ABANDONED:
                await asyncio.to_thread(ABANDONED[job.task_name], job.task_kwargs)
        else:
            log.warning("retrying stalled job %s (%s), its worker %s is gone", job.id, job.task_name, job.worker_id)
            await manager.retry_job(job)
    return len(stalled)


def _abandon_import(task_kwargs: dict) -> None:
    abandon_import(flask_app().extensions["database"], int(task_kwargs["import_id"]))


def _abandon_export(task_kwargs: dict) -> None:
    abandon_export(flask_app().extensions["database"], int(task_kwargs["export_id"]))


# What to tell when a task's job is failed for killing its workers, by task name.
ABANDONED = {IMPORT.name: _abandon_import, EXPORT.name: _abandon_export}


@app.periodic(cron="17 3 * * *", periodic_id="prune_finished_jobs")
@app.task(name="jobs.maintenance.prune_finished_jobs", queue="maintenance", queueing_lock="prune_finished_jobs",
          pass_context=True)
async def prune_finished_jobs(context: JobContext, timestamp: int) -> None:
    """Succeeded jobs are kept 3 days for inspection, failed ones 30."""
    manager = context.app.job_manager
    await manager.delete_old_jobs(nb_hours=72)
    await manager.delete_old_jobs(nb_hours=24 * 30, include_failed=True, include_cancelled=True, include_aborted=True)
