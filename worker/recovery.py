"""What happens after an attempt is lost (its worker died, or its training process was killed):
an automatic resume from the latest usable checkpoint as a new attempt, up to
resources.max_restarts. (Errors a retry cannot fix are failures, not interruptions: they never
come here.) Every live worker looks for
lost attempts periodically; the atomic interrupt lets exactly one of them act."""

import logging
import threading
from datetime import timedelta
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from db.checkpoints import usable_checkpoint
from db.engine import session_scope
from db.jobs import set_job_status
from db.models import Job, Run, utcnow
from db.runs import count_runs, create_attempt, interrupt_run, stale_run_ids
from db.status import JobStatus
from jobspec import JobSpec
from traindock.dispatch import dispatch_run
from traindock.settings import get_settings

log = logging.getLogger(__name__)

def after_interruption(session: Session, run: Run, error: dict[str, Any]) -> int | None:
    """Decide the job's fate after `run` was interrupted. Returns the id of a new attempt to send
    once the transaction commits, or None."""
    job = session.get(Job, run.job_id)
    if job.status == JobStatus.CANCELLING:
        set_job_status(session, job, JobStatus.CANCELLED,
                       f"cancelled: attempt {run.attempt} was lost before it could checkpoint; "
                       "no final checkpoint was written", run_id=run.id, data={"attempt": run.attempt})
        return None
    set_job_status(session, job, JobStatus.INTERRUPTED,
                   f"attempt {run.attempt} interrupted: {error['message']}",
                   run_id=run.id, data={"attempt": run.attempt, "error": error})
    allowed = JobSpec.model_validate(job.spec).resources.max_restarts
    used = count_runs(session, job.id, "restarted")
    if used >= allowed:
        why = f"{used} of {allowed} automatic restarts used"
        job.error = {**error, "message": f"{error['message']} ({why})"}
        set_job_status(session, job, JobStatus.FAILED, f"failed: {error['message']}; not restarting: {why}",
                       run_id=run.id, data={"attempt": run.attempt, "error": job.error})
        return None
    checkpoint = usable_checkpoint(session, job.id)
    step = checkpoint.step if checkpoint else None
    new_run = create_attempt(
        session, job, reason="restarted", resume_step=step,
        message=f"restarting automatically ({used + 1} of {allowed}) "
        + (f"from checkpoint {step}" if step else "from the start: no usable checkpoint"),
    )
    return new_run.id


def recover_lost_runs(app: Celery) -> list[int]:
    """Interrupt every running attempt whose heartbeat is too old, and restart what may be."""
    settings = get_settings()
    cutoff = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s)
    restarted = []
    with session_scope() as session:
        candidates = stale_run_ids(session, cutoff)
    for run_id in candidates:
        error = {"code": "worker_lost",
                 "message": f"no heartbeat for over {settings.heartbeat_timeout_s:g} s: the worker was lost"}
        with session_scope() as session:
            run = interrupt_run(session, run_id, error, heartbeat_before=cutoff)
            new_run_id = after_interruption(session, run, error) if run else None
            queue = session.get(Job, run.job_id).queue if run else None
        if new_run_id:
            dispatch_run(app, new_run_id, queue)
            restarted.append(new_run_id)
    return restarted


def start_recovery_thread(app: Celery) -> threading.Thread:
    interval = get_settings().recovery_interval_s

    def loop() -> None:
        while True:
            try:
                recover_lost_runs(app)
            except Exception:  # keep watching; the next round retries
                log.exception("looking for lost attempts failed")
            threading.Event().wait(interval)

    thread = threading.Thread(target=loop, name="traindock-recovery", daemon=True)
    thread.start()
    return thread
