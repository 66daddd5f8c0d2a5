"""Deleting a finished job: its rows, then (after the commit) its output and log folders, from
the store."""

from sqlalchemy.orm import Session

from api.errors import conflict
from db.hooks import after_commit
from db.jobs import delete_job_rows, lock_job
from db.models import Job, Sweep
from db.status import FINISHED_JOB_STATES
from db.sweeps import SweepStatus
from traindock.paths import job_logs_dir, job_output_dir
from traindock.settings import Settings
from traindock.storage import get_store


def delete_job(session: Session, settings: Settings, job: Job) -> None:
    """409 unless the job is finished (succeeded, failed, cancelled, early stopped): a queued,
    running or paused job still needs its folder; and 409 for a trial of a running sweep, whose
    controller still reads its trials."""
    job = lock_job(session, job.id)
    if job.status not in FINISHED_JOB_STATES:
        raise conflict(f"job {job.id} is {job.status}; cancel it and wait for it to end before deleting it")
    sweep = session.get(Sweep, job.sweep_id) if job.sweep_id is not None else None
    if sweep is not None and sweep.status == SweepStatus.RUNNING:
        raise conflict(f"job {job.id} is trial {job.sweep_trial} of sweep {sweep.id}, which is running; "
                       "cancel the sweep or wait for it to end before deleting its trials")
    store = get_store()
    folders = [job_output_dir(settings.jobs_dir, job.tenant_id, job.spec.get("output_dir"), job.id),
               job_logs_dir(settings.logs_dir, job.id)]
    delete_job_rows(session, job.id)
    session.expunge(job)
    after_commit(session, lambda: [store.delete(store.location_of(folder)) for folder in folders])
