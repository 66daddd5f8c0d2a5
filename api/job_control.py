"""Cancel and resume: state checks, the DB change and its event, then the broker."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.errors import conflict, problem, unprocessable
from api.job_service import enqueue
from api.queue import revoke_run
from db.checkpoints import usable_checkpoint
from db.jobs import lock_job, set_job_status
from db.models import Job
from db.runs import cancel_if_queued, create_attempt, latest_run
from db.status import ACTIVE_JOB_STATES, JobStatus, RESUMABLE_JOB_STATES
from jobspec import JobSpec, ResumeOverrideError, apply_resume_overrides
from jobspec.model import MAX_STEP

IGNORE_DATA_SKIP_WARNING = (
    "ignore_data_skip is true: the resumed run restarts the epoch's data order and will not "
    "reproduce the uninterrupted run"
)


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint_step: int | None = Field(
        None, ge=1, le=MAX_STEP, description="Checkpoint to continue from; default the latest usable one."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Training fields that may change on resume: num_train_epochs, max_steps, "
        "eval/save/logging strategy and steps, save_total_limit.",
    )


def cancel_job(session: Session, job: Job) -> Job:
    job = lock_job(session, job.id)  # a claim, a finish or another cancel waits for this one
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


def resume_job(session: Session, job: Job, request: ResumeRequest) -> tuple[Job, list[str]]:
    """A new attempt of `job`, queued, continuing from a checkpoint. Returns the job and warnings."""
    job = lock_job(session, job.id)  # of two resumes at once, the second sees the first's attempt
    if job.status in ACTIVE_JOB_STATES:
        raise conflict(f"job {job.id} is {job.status}; cancel it first or wait for it to end")
    if job.dataset_id is None:
        raise conflict(f"job {job.id}'s dataset was deleted; upload it again and submit a new job")
    spec = JobSpec.model_validate(job.spec)
    try:
        resumed = apply_resume_overrides(spec, request.overrides)
    except ResumeOverrideError as refused:
        raise unprocessable([problem(("body", *p["loc"]), p["msg"], p["type"]) for p in refused.problems]) from None
    if job.status not in RESUMABLE_JOB_STATES and not _extends(job, spec, resumed):
        raise conflict(
            f"job {job.id} succeeded; resuming it needs overrides that extend training "
            "(a larger max_steps or num_train_epochs)"
        )
    checkpoint = usable_checkpoint(session, job.id, request.checkpoint_step)
    if checkpoint is None:
        where = f"at step {request.checkpoint_step}" if request.checkpoint_step else "at all"
        raise unprocessable([problem(("body", "checkpoint_step"),
                                     f"job {job.id} has no usable checkpoint {where}", "no_checkpoint")])
    job.spec = resumed.model_dump(mode="json")
    run = create_attempt(
        session, job, reason="resumed", resume_step=checkpoint.step,
        message=f"resumed from checkpoint {checkpoint.step}",
        data={"overrides": request.overrides} if request.overrides else None,
    )
    session.commit()
    enqueue(session, job, run.id)
    warnings = [IGNORE_DATA_SKIP_WARNING] if resumed.training.ignore_data_skip else []
    return job, warnings


def _extends(job: Job, before: JobSpec, after: JobSpec) -> bool:
    reached = (job.progress or {}).get("step") or 0
    if after.training.max_steps > 0:
        return after.training.max_steps > reached
    return before.training.max_steps <= 0 and after.training.num_train_epochs > before.training.num_train_epochs
