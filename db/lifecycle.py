"""The job lifecycle: every change of a job's state, and the table of the legal ones.

A job's status follows its latest run (attempt). Each public function here is one transition: it
takes the job's row lock, re-checks the state it expects, writes the job and run rows and appends
exactly one event, typed `job.<new status>` with the payload {from, to, attempt, ...}. Callers say
what happened (a worker claimed the run, the process exited after a stop, the worker was lost);
this module decides the state. A run to start is sent to the broker only after the transaction
commits (db/outbox.py).
"""

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.checkpoints import usable_checkpoint
from db.clock import database_now
from db.events import add_event
from db.jobs import lock_job
from db.models import Event, Job, Run, utcnow
from db.outbox import revoke_after_commit, send_after_commit
from db.runs import count_runs, latest_run
from db.status import FINISHED_JOB_STATES, JobStatus, RunStatus
from jobspec import JobSpec

Q, R, CING, PING, P, I, S, F, C, ESING, ES = (
    JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING, JobStatus.PAUSING, JobStatus.PAUSED,
    JobStatus.INTERRUPTED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED,
    JobStatus.EARLY_STOPPING, JobStatus.EARLY_STOPPED,
)
# from -> the states it may change to. None is a job being created.
TRANSITIONS: dict[JobStatus | None, frozenset[JobStatus]] = {
    None: frozenset({Q}),
    Q: frozenset({R, C, P}),         # claimed; cancelled or paused before it started
    R: frozenset({CING, PING, ESING, S, F, I}),
    CING: frozenset({C, S, F}),      # stopped (or lost) -> cancelled; finished before the stop took effect
    PING: frozenset({P, CING, S, F}),
    ESING: frozenset({ES, CING, S, F}),  # a sweep's early stop (ASHA), like a cancel
    ES: frozenset(),                 # a trial's result: never resumed
    P: frozenset({Q, C}),            # resumed; cancelled while paused
    I: frozenset({Q, F}),            # restarted automatically; out of restarts (never rests here)
    S: frozenset({Q}),               # resumed with an extension
    F: frozenset({Q}),               # resumed
    C: frozenset({Q}),               # resumed
}

# How a running attempt ended -> the job's status.
JOB_STATUS_AFTER_RUN: dict[RunStatus, JobStatus] = {
    RunStatus.SUCCEEDED: S,
    RunStatus.FAILED: F,
    RunStatus.CANCELLED: C,
    RunStatus.PAUSED: P,
    RunStatus.INTERRUPTED: I,
    RunStatus.EARLY_STOPPED: ES,
}


# Interruptions that are no fault of the job: handed back to the queue without using a restart.
HANDED_BACK_CODES = frozenset({"worker_shutdown", "database_unavailable"})


class TransitionRefused(Exception):
    """The job's state does not allow what was asked (the API answers 409)."""


class IllegalTransition(TransitionRefused):
    """A change the table does not allow; nothing was written."""


def change_status(
    session: Session, job: Job, to: JobStatus, message: str, *, run: Run | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """The one writer of a job's status: checks the table, writes, and appends the event."""
    previous = JobStatus(job.status) if job.status is not None else None
    if to not in TRANSITIONS[previous]:
        raise IllegalTransition(f"job {job.id} cannot go from {previous} to {to}")
    now = utcnow()
    job.status = to
    job.updated_at = now
    if to == R and job.started_at is None:
        job.started_at = now
    job.finished_at = now if to in FINISHED_JOB_STATES else None
    if job.id is None:
        session.flush()
    payload = {"from": previous, "to": to, **({"attempt": run.attempt} if run else {}), **(data or {})}
    return add_event(session, job.id, f"job.{to}", message, run_id=run.id if run else None, data=payload)


# ---- Submit, claim, resume ------------------------------------------------------------------

def create_job(session: Session, *, queue: str, **fields: Any) -> Job:
    """A queued job with its first attempt, sent to `queue` after the commit."""
    job = Job(queue=queue, **fields)
    session.add(job)
    run = Run(attempt=1, status=RunStatus.QUEUED, reason="submitted")
    job.runs.append(run)
    change_status(session, job, Q, f"job queued on '{queue}'", run=run)
    send_after_commit(session, run.id, queue)
    return job


def claim_run(session: Session, run_id: int, worker: str) -> Run | None:
    """queued -> running, only if the run and its job are still queued. A second delivery of the
    same run, or a run cancelled or paused meanwhile, gets None and an event."""
    if session.get(Run, run_id) is None:
        return None
    run, job = _lock_run(session, run_id)
    if run.status != RunStatus.QUEUED or job.status != Q:
        add_event(session, job.id, "run.delivery_ignored",
                  f"worker {worker} received attempt {run.attempt} but it is {run.status}; not starting it",
                  run_id=run.id, data={"worker": worker, "run_status": run.status})
        return None
    now = utcnow()
    run.status, run.worker, run.started_at, run.heartbeat_at = RunStatus.RUNNING, worker, now, database_now(session)
    change_status(session, job, R, f"attempt {run.attempt} started on {worker}", run=run, data={"worker": worker})
    return run


def resume(
    session: Session, job_id: int, *, spec: dict[str, Any], resume_step: int | None, message: str,
    data: dict[str, Any] | None = None,
) -> Run:
    """A user's resume: a new queued attempt continuing from checkpoint `resume_step` (None: from
    the start) with `spec`. The caller has checked that the job may be resumed."""
    job = lock_job(session, job_id)
    if Q not in TRANSITIONS[JobStatus(job.status)]:
        raise IllegalTransition(f"job {job.id} is {job.status}; it cannot be resumed now")
    job.spec = spec
    return _start_attempt(session, job, "resumed", resume_step, message, data)


# ---- Requests: cancel and pause ---------------------------------------------------------------

def request_cancel(session: Session, job_id: int) -> Job:
    """Queued or paused: cancelled at once. Running or pausing: cancelling (the supervisor asks the
    process to checkpoint and stop). Idempotent on a cancelling or cancelled job."""
    job = lock_job(session, job_id)
    if job.status in (CING, C):
        return job
    run = latest_run(session, job.id)
    if job.status == Q:
        _end_run(run, RunStatus.CANCELLED)
        change_status(session, job, C, "cancelled before it started", run=run)
        revoke_after_commit(session, run.id)
    elif job.status == P:
        change_status(session, job, C, "cancelled while paused", run=run)
    elif job.status in (R, PING, ESING):
        change_status(session, job, CING, "cancel requested: the training process will checkpoint and stop", run=run)
    else:
        raise TransitionRefused(f"job {job.id} is {job.status}; only queued, running or paused jobs can be cancelled")
    return job


def request_pause(session: Session, job_id: int) -> Job:
    """Queued: paused at once. Running: pausing (checkpoint and stop, like a cancel), then paused.
    Idempotent on a pausing or paused job."""
    job = lock_job(session, job_id)
    if job.status in (PING, P):
        return job
    run = latest_run(session, job.id)
    if job.status == Q:
        _end_run(run, RunStatus.PAUSED)
        change_status(session, job, P, "paused before it started", run=run)
        revoke_after_commit(session, run.id)
    elif job.status == R:
        change_status(session, job, PING, "pause requested: the training process will checkpoint and stop", run=run)
    else:
        raise TransitionRefused(f"job {job.id} is {job.status}; only queued or running jobs can be paused")
    return job


def request_early_stop(session: Session, job_id: int, message: str, data: dict[str, Any]) -> Job | None:
    """A sweep's early-stopping rule stops a running trial: early_stopping (the training process
    checkpoints and stops, as for a cancel), then early_stopped. None (nothing written) when the
    trial is no longer running: it finished or was stopped first."""
    job = lock_job(session, job_id)
    if job.status != R:
        return None
    change_status(session, job, ESING, message, run=latest_run(session, job.id), data=data)
    return job


# ---- How an attempt ended (the supervisor and the recovery say) -----------------------------

def finish_run(
    session: Session, run_id: int, outcome: RunStatus, message: str, *, exit_code: int | None = None,
    error: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
) -> Run | None:
    """A running attempt ended with `outcome`; its job takes the matching status. None (and no
    change) when something else settled the attempt first (the recovery took it for lost)."""
    run, job = _lock_run(session, run_id)
    if run.status != RunStatus.RUNNING:
        return None
    _end_run(run, outcome, exit_code=exit_code, error=error)
    job.error = run.error if outcome == RunStatus.FAILED else None
    payload = {"exit_code": exit_code, **({"error": run.error} if outcome == RunStatus.FAILED else {}), **(data or {})}
    change_status(session, job, JOB_STATUS_AFTER_RUN[outcome], message, run=run, data=payload)
    return run


def finish_stopped(
    session: Session, run_id: int, *, exit_code: int | None, checkpoint_step: int | None, killed: bool
) -> Run | None:
    """The training process stopped as asked (or was killed after the grace period): the job ends
    cancelled, paused or early stopped, whichever was asked last."""
    job = lock_job(session, session.get(Run, run_id).job_id)
    outcome = {PING: RunStatus.PAUSED, ESING: RunStatus.EARLY_STOPPED}.get(job.status, RunStatus.CANCELLED)
    if killed:
        message = (f"{outcome}: the training process did not stop within the grace period and was killed; "
                   "no final checkpoint was written")
    elif checkpoint_step is not None:
        message = f"{outcome}; checkpoint of step {checkpoint_step} written"
    else:
        message = str(outcome)
    return finish_run(session, run_id, outcome, message, exit_code=exit_code,
                      data={"checkpoint_step": None if killed else checkpoint_step})


def interrupt_and_restart(
    session: Session, run_id: int, error: dict[str, Any], *, exit_code: int | None = None,
    heartbeat_before=None,
) -> Run | None:
    """The attempt was lost (worker gone, process killed, worker shut down). Only if it is still
    running (and, with `heartbeat_before`, its heartbeat still older): of several workers noticing,
    one acts. A job being cancelled or paused ends so; otherwise it restarts from its latest usable
    checkpoint as a new attempt, up to resources.max_restarts (a worker shutdown hands the job back
    without using one), or fails. Returns the interrupted run, or None."""
    run, job = _lock_run(session, run_id)
    if run.status != RunStatus.RUNNING or (heartbeat_before is not None and run.heartbeat_at >= heartbeat_before):
        return None
    _end_run(run, RunStatus.INTERRUPTED, exit_code=exit_code, error=error)
    if job.status in (CING, PING, ESING):
        to = {CING: C, PING: P, ESING: ES}[job.status]
        change_status(session, job, to, f"{to}: attempt {run.attempt} was lost before it could checkpoint; "
                      "no final checkpoint was written", run=run, data={"error": error})
        return run
    change_status(session, job, I, f"attempt {run.attempt} interrupted: {error['message']}", run=run,
                  data={"error": error, "exit_code": exit_code})
    handed_back = error["code"] in HANDED_BACK_CODES
    allowed = JobSpec.model_validate(job.spec).resources.max_restarts
    used = count_runs(session, job.id, "restarted")
    if not handed_back and used >= allowed:
        why = f"{used} of {allowed} automatic restarts used"
        job.error = {**error, "message": f"{error['message']} ({why})"}
        change_status(session, job, F, f"failed: {error['message']}; not restarting: {why}", run=run,
                      data={"error": job.error})
        return run
    checkpoint = usable_checkpoint(session, job.id)
    step = checkpoint.step if checkpoint else None
    where = f"from checkpoint {step}" if step else "from the start: no usable checkpoint"
    if handed_back:
        _start_attempt(session, job, "handed_back", step, f"handed back to the queue {where}")
    else:
        _start_attempt(session, job, "restarted", step, f"restarting automatically ({used + 1} of {allowed}) {where}")
    return run


# ---- Helpers --------------------------------------------------------------------------------

def _lock_run(session: Session, run_id: int) -> tuple[Run, Job]:
    run = session.get(Run, run_id)
    job = lock_job(session, run.job_id)
    session.refresh(run)
    return run, job


def _end_run(run: Run, status: RunStatus, *, exit_code: int | None = None, error: dict[str, Any] | None = None) -> None:
    run.status = status
    run.finished_at = utcnow()
    run.exit_code = exit_code
    if error is not None:
        run.error = error


def _start_attempt(
    session: Session, job: Job, reason: str, resume_step: int | None, message: str,
    data: dict[str, Any] | None = None,
) -> Run:
    attempt = (session.scalar(select(func.max(Run.attempt)).where(Run.job_id == job.id)) or 0) + 1
    run = Run(attempt=attempt, status=RunStatus.QUEUED, reason=reason, resume_step=resume_step)
    job.runs.append(run)
    session.flush()
    job.error = None
    job.result = None
    change_status(session, job, Q, message, run=run,
                  data={"reason": reason, "resume_step": resume_step, **(data or {})})
    send_after_commit(session, run.id, job.queue)
    return run
