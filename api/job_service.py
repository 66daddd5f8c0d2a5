"""Submitting a job: validate against the server, store it; the request's commit sends it."""

import hashlib
import json
from typing import Any

from fastapi import HTTPException
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import body_problems, conflict, unprocessable
from api.job_checks import server_problems
from api.worker_fit import worker_fit
from db import jobs as queries
from db import lifecycle
from db.models import Job
from db.tenants import lock_tenant
from jobspec import JobSpec, spec_problems, tuning_warnings
from traindock.settings import Settings


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def all_problems(session: Session, settings: Settings, tenant_id: int, spec: JobSpec) -> list[dict[str, Any]]:
    return body_problems(spec_problems(spec) + server_problems(session, settings, tenant_id, spec))


def job_warnings(session: Session, settings: Settings, spec: JobSpec) -> list[dict[str, str]]:
    """What never rejects a job but is worth knowing, as /jobs/validate shows it and POST /jobs
    returns it: the tuning tips, and what only some (or none) of the queue's live workers can run."""
    return tuning_warnings(spec) + worker_fit(session, settings, spec)[1]


def submit_job(
    session: Session, settings: Settings, tenant_id: int, spec: JobSpec, body_hash: str,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """The job and whether it was created now (False: an earlier request with the same key)."""
    lock_tenant(session, tenant_id)
    if idempotency_key:
        earlier = queries.get_job_by_idempotency_key(session, tenant_id, idempotency_key)
        if earlier is not None:
            return _same_request(earlier, body_hash), False
    if problems := all_problems(session, settings, tenant_id, spec):
        raise unprocessable(problems)
    if queries.count_queued(session, tenant_id) >= settings.max_queued_jobs_per_tenant:
        raise HTTPException(429, f"this tenant already has {settings.max_queued_jobs_per_tenant} queued "
                                 "jobs, the limit; wait for some to start or cancel some",
                            headers={"Retry-After": "60"})
    try:
        job = lifecycle.create_job(
            session, tenant_id=tenant_id, spec=spec.model_dump(mode="json"), dataset_id=spec.dataset_id,
            queue=spec.resources.queue or settings.default_queue, name=spec.name,
            idempotency_key=idempotency_key, request_hash=body_hash,
        )
    except IntegrityError:  # a concurrent request with the same key was first
        session.rollback()
        earlier = queries.get_job_by_idempotency_key(session, tenant_id, idempotency_key) if idempotency_key else None
        if earlier is None:
            raise
        return _same_request(earlier, body_hash), False
    # The stored spec names its folder, so the worker never has to invent it.
    job.spec = spec.model_copy(update={"output_dir": spec.output_dir or f"job-{job.id}"}).model_dump(mode="json")
    session.flush()  # the response shows the row as stored (updated_at included)
    return job, True


def _same_request(job: Job, body_hash: str) -> Job:
    if job.request_hash != body_hash:
        raise conflict("Idempotency-Key was already used with a different request body")
    return job
