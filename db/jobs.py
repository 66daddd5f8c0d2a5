"""Job queries: the row lock, lookup, listing, progress and result. Status changes are
db/lifecycle.py's."""

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, defer

from db.models import Job, utcnow
from db.sequence import next_seq
from db.status import JobStatus
from jobspec.model import JobSpec


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
    metadata: dict[str, str] | None = None,
) -> list[Job]:
    """Newest first; `before` is the id of the last job the client has seen. `metadata`: only jobs
    whose OpenAI-compatible request had these metadata values."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if not with_spec:
        query = query.options(defer(Job.spec, raiseload=True))
    if statuses:
        query = query.where(Job.status.in_(statuses))
    for key, value in (metadata or {}).items():
        query = query.where(Job.openai["metadata"][key].as_string() == value)
    if before is not None:
        query = query.where(Job.id < before)
    return list(session.scalars(query.order_by(Job.id.desc()).limit(limit)))


def set_progress(session: Session, job_id: int, progress: dict[str, Any]) -> None:
    next_seq(session, job_id, progress=progress, progress_seq=Job.stream_seq + 1, updated_at=utcnow())


def set_result(session: Session, job_id: int, result: dict[str, Any]) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(result=result, updated_at=utcnow()))


def get_status(session: Session, job_id: int) -> str | None:
    return session.scalar(select(Job.status).where(Job.id == job_id))


def job_gpus(session: Session, job_id: int) -> int:
    """resources.gpus of the job's spec (as stored, so with its default)."""
    spec = session.scalar(select(Job.spec).where(Job.id == job_id))
    return JobSpec.model_validate(spec).resources.gpus


def list_succeeded_jobs(session: Session, tenant_id: int) -> list[Job]:
    """The tenant's jobs that produced a final model, newest first."""
    return list(session.scalars(
        select(Job).where(Job.tenant_id == tenant_id, Job.status == JobStatus.SUCCEEDED).order_by(Job.id.desc())
    ))


def delete_job_rows(session: Session, job_id: int) -> None:
    """The job and, by the foreign keys' ON DELETE CASCADE, its runs, events, metrics and checkpoints."""
    session.execute(delete(Job).where(Job.id == job_id))
