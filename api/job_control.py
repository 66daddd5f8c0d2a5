"""Cancel, pause and resume: what the API checks before the lifecycle changes the job."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.errors import body_problems, conflict, problem, unprocessable
from db import lifecycle
from db.checkpoints import usable_checkpoint
from db.jobs import lock_job
from db.models import Job
from db.status import ACTIVE_JOB_STATES, RESUMABLE_JOB_STATES, JobStatus
from db.sweep_control import advance_after_commit
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
    return _tell_sweep(session, lifecycle.request_cancel(session, job.id))


def pause_job(session: Session, job: Job) -> Job:
    return _tell_sweep(session, lifecycle.request_pause(session, job.id))


def _tell_sweep(session: Session, job: Job) -> Job:
    """A sweep's trial stopped by hand: its controller looks again once this commits."""
    if job.sweep_id is not None:
        advance_after_commit(session, job.sweep_id)
    return job


def resume_job(session: Session, job: Job, request: ResumeRequest) -> tuple[Job, list[str]]:
    """A new attempt of `job`, queued, continuing from a checkpoint. Returns the job and warnings."""
    job = lock_job(session, job.id)  # of two resumes at once, the second sees the first's attempt
    if job.status in ACTIVE_JOB_STATES:
        raise conflict(f"job {job.id} is {job.status}; cancel or pause it first, or wait for it to end")
    if job.status == JobStatus.EARLY_STOPPED:
        raise conflict(f"job {job.id} is early_stopped: its sweep stopped it as a trial; submit a new job "
                       "(init_from_job_id or resume_from_checkpoint) to train it further")
    if job.dataset_id is None:
        raise conflict(f"job {job.id}'s dataset was deleted; upload it again and submit a new job")
    spec = JobSpec.model_validate(job.spec)
    try:
        resumed = apply_resume_overrides(spec, request.overrides)
    except ResumeOverrideError as refused:
        raise unprocessable(body_problems(refused.problems)) from None
    if job.status not in RESUMABLE_JOB_STATES and not _extends(job, spec, resumed):
        raise conflict(
            f"job {job.id} succeeded; resuming it needs overrides that extend training "
            "(a larger max_steps or num_train_epochs)"
        )
    checkpoint = usable_checkpoint(session, job.id, request.checkpoint_step)
    if checkpoint is None and not _never_trained(job, request):
        where = f"at step {request.checkpoint_step}" if request.checkpoint_step else "at all"
        raise unprocessable(body_problems([problem(("checkpoint_step",),
                                                   f"job {job.id} has no usable checkpoint {where}", "no_checkpoint")]))
    step = checkpoint.step if checkpoint else None
    lifecycle.resume(
        session, job.id, spec=resumed.model_dump(mode="json"), resume_step=step,
        message=f"resumed from checkpoint {step}" if step else "resumed from the start: it had not saved a checkpoint",
        data={"overrides": request.overrides} if request.overrides else None,
    )
    warnings = [IGNORE_DATA_SKIP_WARNING] if resumed.training.ignore_data_skip else []
    return job, warnings


def _never_trained(job: Job, request: ResumeRequest) -> bool:
    """A job paused before it saved anything (while queued, or before its stop could checkpoint)
    starts over."""
    return job.status == JobStatus.PAUSED and request.checkpoint_step is None


def _extends(job: Job, before: JobSpec, after: JobSpec) -> bool:
    reached = (job.progress or {}).get("step") or 0
    if after.training.max_steps > 0:
        return after.training.max_steps > reached
    return before.training.max_steps <= 0 and after.training.num_train_epochs > before.training.num_train_epochs
