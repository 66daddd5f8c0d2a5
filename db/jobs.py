"""Jobs: creation, lookup, listing, status changes (each one an event), progress and result."""

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, defer

from db.events import add_event
from db.models import Job, Run, utcnow
from db.status import FINISHED_JOB_STATES, JobStatus, RunStatus


def create_job(
    session: Session,
    *,
    tenant_id: int,
    spec: dict[str, Any],
    dataset_id: int,
    queue: str,
    name: str | None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> tuple[Job, Run]:
    """A queued job with its first run (attempt 1)."""
    job = Job(
        tenant_id=tenant_id,
        name=name,
        status=JobStatus.QUEUED,
        spec=spec,
        dataset_id=dataset_id,
        queue=queue,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    session.add(job)
    session.flush()
    run = Run(job_id=job.id, attempt=1, status=RunStatus.QUEUED)
    session.add(run)
    session.flush()
    add_event(
        session, job.id, "status", f"job queued on '{queue}'", run_id=run.id,
        data={"from": None, "to": JobStatus.QUEUED, "attempt": 1},
    )
    return job, run


def lock_job(session: Session, job_id: int) -> Job | None:
    """The job, re-read after taking its row's write lock until the transaction ends (PostgreSQL:
    a row lock; SQLite: the database write lock). Every change of a job's state (claim, finish,
    interrupt, cancel, resume) takes it first, so two of them never interleave."""
    session.execute(update(Job).where(Job.id == job_id).values(updated_at=Job.updated_at))
    return session.get(Job, job_id, populate_existing=True)


def get_job(session: Session, job_id: int, tenant_id: int | None = None) -> Job | None:
    """The job; with `tenant_id`, only if that tenant owns it."""
    job = session.get(Job, job_id)
    if job is None or (tenant_id is not None and job.tenant_id != tenant_id):
        return None
    return job


def owns_job(session: Session, job_id: int, tenant_id: int) -> bool:
    """Whether the tenant has this job: one indexed read, without loading the job and its runs."""
    return session.scalar(select(Job.id).where(Job.id == job_id, Job.tenant_id == tenant_id)) is not None


def get_job_by_idempotency_key(session: Session, tenant_id: int, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))


def count_queued(session: Session, tenant_id: int) -> int:
    return session.scalar(
        select(func.count()).where(Job.tenant_id == tenant_id, Job.status == JobStatus.QUEUED)
    )


def list_jobs(
    session: Session, tenant_id: int, *, statuses: list[str] | None, before: int | None, limit: int,
    with_spec: bool = True,
) -> list[Job]:
    """Newest first; `before` is the id of the last job the client has seen."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if not with_spec:
        query = query.options(defer(Job.spec, raiseload=True))
    if statuses:
        query = query.where(Job.status.in_(statuses))
    if before is not None:
        query = query.where(Job.id < before)
    return list(session.scalars(query.order_by(Job.id.desc()).limit(limit)))


def set_job_status(
    session: Session,
    job: Job,
    status: JobStatus,
    message: str,
    *,
    run_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    previous = job.status
    job.status = status
    job.updated_at = utcnow()
    if status == JobStatus.RUNNING and job.started_at is None:
        job.started_at = utcnow()
    if status in FINISHED_JOB_STATES:
        job.finished_at = utcnow()
    add_event(
        session, job.id, "status", message, run_id=run_id,
        data={"from": previous, "to": status, **(data or {})},
    )


def set_progress(session: Session, job_id: int, progress: dict[str, Any]) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(progress=progress, updated_at=utcnow()))


def set_result(session: Session, job_id: int, result: dict[str, Any]) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(result=result, updated_at=utcnow()))


def get_status(session: Session, job_id: int) -> str | None:
    return session.scalar(select(Job.status).where(Job.id == job_id))
