"""Cancel (and later resume) a job: state checks, the DB change and its event, then the broker."""

from sqlalchemy.orm import Session

from api.errors import conflict
from api.queue import revoke_run
from db.jobs import set_job_status
from db.models import Job
from db.runs import cancel_if_queued, latest_run
from db.status import JobStatus


def cancel_job(session: Session, job: Job) -> Job:
    if job.status in (JobStatus.CANCELLING, JobStatus.CANCELLED):
        return job
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise conflict(f"job {job.id} is {job.status}; only queued or running jobs can be cancelled")
    run = latest_run(session, job.id)
    if job.status == JobStatus.QUEUED and cancel_if_queued(session, run.id):
        set_job_status(session, job, JobStatus.CANCELLED, "cancelled before it started",
                       run_id=run.id, data={"attempt": run.attempt})
        session.commit()
        revoke_run(run.id)
        return job
    set_job_status(session, job, JobStatus.CANCELLING,
                   "cancel requested: the training process will checkpoint and stop",
                   run_id=run.id, data={"attempt": run.attempt})
    session.commit()
    return job
