"""Runs (attempts): the atomic claim, heartbeats and outcomes. The run row is the truth about
a training attempt, not Celery's task state."""

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.events import add_event
from db.jobs import lock_job, set_job_status
from db.models import Job, Run, utcnow
from db.status import JobStatus, RunStatus


def get_run(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


def claim_run(session: Session, run_id: int, worker: str) -> Run | None:
    """queued -> running, only if still queued. Returns the run when this caller won the claim;
    a second delivery of the same run, or a run cancelled meanwhile, gets None and an event."""
    run = session.get(Run, run_id)
    if run is None:
        return None
    job = lock_job(session, run.job_id)
    now = utcnow()
    claimed = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED)
        .values(status=RunStatus.RUNNING, worker=worker, started_at=now, heartbeat_at=now, updated_at=now)
    ).rowcount
    session.refresh(run)
    if not claimed:
        add_event(
            session, run.job_id, "delivery_ignored",
            f"worker {worker} received attempt {run.attempt} but it is {run.status}; not starting it",
            run_id=run.id, data={"worker": worker, "run_status": run.status},
        )
        return None
    set_job_status(
        session, job, JobStatus.RUNNING, f"attempt {run.attempt} started on {worker}",
        run_id=run.id, data={"attempt": run.attempt, "worker": worker},
    )
    return run


def set_pid(session: Session, run_id: int, pid: int) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(pid=pid))


def beat(session: Session, run_id: int) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))


def set_run_error(session: Session, run_id: int, error: dict[str, Any]) -> None:
    """Written by the training process before it exits with an error the supervisor reports."""
    session.execute(update(Run).where(Run.id == run_id).values(error=error))


def finish_run(
    session: Session,
    run_id: int,
    status: RunStatus,
    message: str,
    *,
    exit_code: int | None = None,
    error: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    expected: RunStatus = RunStatus.RUNNING,
) -> Run | None:
    """Record a run's outcome and move its job to the matching final state, if the run is still
    `expected`; None (and no change) when something else settled it first, e.g. the recovery of
    an attempt thought lost."""
    run = session.get(Run, run_id)
    job = lock_job(session, run.job_id)
    session.refresh(run)
    if run.status != expected:
        return None
    run.status = status
    run.finished_at = utcnow()
    run.exit_code = exit_code
    if error is not None:
        run.error = error
    job.error = run.error if status == RunStatus.FAILED else None
    set_job_status(
        session, job, JobStatus(status.value), message, run_id=run.id,
        data={"attempt": run.attempt, "exit_code": exit_code, **({"error": error} if error else {}), **(data or {})},
    )
    return run


def latest_run(session: Session, job_id: int) -> Run | None:
    return session.scalar(select(Run).where(Run.job_id == job_id).order_by(Run.attempt.desc()).limit(1))


def cancel_if_queued(session: Session, run_id: int) -> bool:
    """queued -> cancelled, atomically; False when a worker claimed the run first."""
    return bool(session.execute(
        update(Run).where(Run.id == run_id, Run.status == RunStatus.QUEUED)
        .values(status=RunStatus.CANCELLED, finished_at=utcnow(), updated_at=utcnow())
    ).rowcount)


def create_attempt(
    session: Session, job: Job, *, reason: str, resume_step: int | None, message: str,
    data: dict[str, Any] | None = None,
) -> Run:
    """A new queued run of `job` that continues from checkpoint `resume_step` (None: from the start)."""
    attempt = (session.scalar(select(func.max(Run.attempt)).where(Run.job_id == job.id)) or 0) + 1
    run = Run(attempt=attempt, status=RunStatus.QUEUED, reason=reason, resume_step=resume_step)
    job.runs.append(run)
    session.flush()
    job.finished_at = None
    job.error = None
    job.result = None
    set_job_status(
        session, job, JobStatus.QUEUED, message, run_id=run.id,
        data={"attempt": attempt, "reason": reason, "resume_step": resume_step, **(data or {})},
    )
    return run


def count_runs(session: Session, job_id: int, reason: str) -> int:
    return session.scalar(select(func.count()).where(Run.job_id == job_id, Run.reason == reason))


def stale_run_ids(session: Session, heartbeat_before: datetime) -> list[int]:
    return list(session.scalars(
        select(Run.id).where(Run.status == RunStatus.RUNNING, Run.heartbeat_at < heartbeat_before)
    ))


def interrupt_run(
    session: Session, run_id: int, error: dict[str, Any], *, heartbeat_before: datetime | None = None
) -> Run | None:
    """running -> interrupted, atomically (and only if its heartbeat is still older than
    `heartbeat_before`, when given): of several workers noticing a lost run, one wins. The job's
    state is the caller's to decide (worker/recovery.py)."""
    run = session.get(Run, run_id)
    if run is None:
        return None
    lock_job(session, run.job_id)
    condition = [Run.id == run_id, Run.status == RunStatus.RUNNING]
    if heartbeat_before is not None:
        condition.append(Run.heartbeat_at < heartbeat_before)
    won = session.execute(
        update(Run).where(*condition)
        .values(status=RunStatus.INTERRUPTED, error=error, finished_at=utcnow(), updated_at=utcnow())
    ).rowcount
    if not won:
        return None
    return session.get(Run, run_id, populate_existing=True)
