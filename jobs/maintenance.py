"""Keeping the queue itself healthy."""

from __future__ import annotations

import logging

from procrastinate import JobContext

from . import app

log = logging.getLogger(__name__)

# A worker sends a heartbeat every 10 s; one silent for 60 s is gone (SIGKILL, lost
# machine), and the job it held is stuck in `doing` until someone puts it back.
STALLED_AFTER_S = 60


@app.periodic(cron="* * * * *", periodic_id="retry_stalled_jobs")
@app.task(queue="maintenance", queueing_lock="retry_stalled_jobs", pass_context=True)
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """Requeue jobs whose worker stopped sending heartbeats."""
    manager = context.app.job_manager
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_S)
    for job in stalled:
        log.warning("retrying stalled job %s (%s), its worker %s is gone", job.id, job.task_name, job.worker_id)
        await manager.retry_job(job)
    return len(stalled)


@app.periodic(cron="17 3 * * *", periodic_id="prune_finished_jobs")
@app.task(queue="maintenance", queueing_lock="prune_finished_jobs", pass_context=True)
async def prune_finished_jobs(context: JobContext, timestamp: int) -> None:
    """Succeeded jobs are kept 3 days for inspection, failed ones 30."""
    manager = context.app.job_manager
    await manager.delete_old_jobs(nb_hours=72)
    await manager.delete_old_jobs(nb_hours=24 * 30, include_failed=True, include_cancelled=True, include_aborted=True)
