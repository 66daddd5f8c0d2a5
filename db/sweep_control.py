"""The controller of a sweep: one `advance` reads what is stored (the trials' jobs, their metric
points, the sweep's rung events), decides ASHA's rungs, starts trials up to the limits and ends
the sweep when its trials are done. It holds the sweep's row lock, so two controllers never act on
one sweep, and keeps nothing in memory: whoever calls it next goes on from the rows. It is called
when a trial's attempt ended (the supervisor), at a rung step (the trial's training process), when
a trial is cancelled or paused by hand and when a sweep is created (the API), and every
recovery_interval_s by each worker's watch, which picks up whatever a crash left undone.
(db/lifecycle.py cannot call it: this module changes jobs through it.)"""

import logging
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from db import lifecycle
from db.engine import session_scope
from db.hooks import after_commit
from db.models import Job, Sweep
from db.status import ACTIVE_JOB_STATES, JobStatus
from db.sweep_search import Outcome, ask_tpe, planned_trials, promoted
from db.sweeps import (
    SweepStatus, add_sweep_event, change_sweep_status, final_values, lock_sweep, metric_points, running_sweep_ids,
    sweep_events, trials,
)
from jobspec import JobSpec, spec_problems
from jobspec.sweep import SweepRequest, trial_spec

log = logging.getLogger(__name__)

RUNG = "trial.rung"


def advance(session: Session, sweep_id: int) -> Sweep | None:
    sweep = lock_sweep(session, sweep_id)
    if sweep is None or sweep.status != SweepStatus.RUNNING:
        return sweep
    request = SweepRequest.model_validate(sweep.request)
    jobs = trials(session, sweep.id)
    if request.early_stopping is not None:
        _decide_rungs(session, sweep, request, jobs)
    _start_trials(session, sweep, request, jobs)
    _finish_if_done(session, sweep, request, jobs)
    return sweep


def advance_after_commit(session: Session, sweep_id: int) -> None:
    """Advance the sweep once this transaction commits (a trial was stopped by hand)."""
    after_commit(session, lambda: advance_now(sweep_id))


def advance_now(sweep_id: int | None = None, *, job_id: int | None = None) -> None:
    """Advance the sweep (or the sweep whose trial `job_id` is; none: nothing) in a transaction of
    its own; a failure waits for the next trigger or the periodic check."""
    try:
        with session_scope() as session:
            if job_id is not None:
                sweep_id = session.scalar(select(Job.sweep_id).where(Job.id == job_id))
            if sweep_id is not None:
                advance(session, sweep_id)
    except Exception:
        log.exception("advancing the sweep of %s failed; the periodic check tries again",
                      f"job {job_id}" if job_id is not None else sweep_id)


def cancel_sweep(session: Session, sweep_id: int) -> Sweep:
    """running -> cancelled; its active trials are cancelled (db/lifecycle.py, as any job)."""
    sweep = lock_sweep(session, sweep_id)
    if sweep.status == SweepStatus.CANCELLED:
        return sweep
    _end_with_active_cancelled(session, sweep, SweepStatus.CANCELLED, "cancelled", {})
    return sweep


def _end_with_active_cancelled(session: Session, sweep: Sweep, to: str, message: str, data: dict[str, Any]) -> None:
    """The sweep ends `to`, and its active trials are cancelled (db/lifecycle.py, as any job)."""
    active = [job for job in trials(session, sweep.id) if job.status in ACTIVE_JOB_STATES]
    change_sweep_status(session, sweep, to, f"{message}; cancelling {len(active)} active trials",
                        {**data, "cancelled_trials": [job.id for job in active]})
    for job in active:
        lifecycle.request_cancel(session, job.id)


# ---- ASHA ------------------------------------------------------------------------------------

def _decide_rungs(session: Session, sweep: Sweep, request: SweepRequest, jobs: list[Job]) -> None:
    """Each trial's metric at each rung step it reached, in the order the points were written (the
    asynchronous order ASHA decides in), once: the decision is a `trial.rung` event."""
    rung_steps = request.rung_steps()
    recorded: dict[int, dict[int, float]] = {job.id: {} for job in jobs}
    stopped: set[int] = set()
    for event in sweep_events(session, sweep.id, RUNG):
        if event.data["job_id"] not in recorded:
            continue  # its job was deleted since
        recorded[event.data["job_id"]][event.data["rung"]] = event.data["value"]
        if not event.data["promoted"]:
            stopped.add(event.data["job_id"])
    by_id = {job.id: job for job in jobs}
    for point in metric_points(session, list(by_id), request.metric.name, rung_steps):
        job, rung = by_id[point.job_id], rung_steps.index(point.step)
        if job.id in stopped or rung in recorded[job.id] or any(r not in recorded[job.id] for r in range(rung)):
            continue
        others = [rungs for job_id, rungs in recorded.items() if job_id != job.id]
        goes_on = promoted(request, others, recorded[job.id], rung, point.value)
        recorded[job.id][rung] = point.value
        data = {"job_id": job.id, "trial": job.sweep_trial, "rung": rung, "step": point.step,
                "value": point.value, "promoted": goes_on}
        verdict = "goes on" if goes_on else "is stopped"
        add_sweep_event(session, sweep.id, RUNG, f"trial {job.sweep_trial} (job {job.id}) {verdict} at rung "
                        f"{rung}: {request.metric.name} {point.value:.6g} at step {point.step}", data)
        if not goes_on:
            stopped.add(job.id)
            lifecycle.request_early_stop(session, job.id, f"early stop (ASHA): {request.metric.name} "
                                         f"{point.value:.6g} at step {point.step} is not in the best "
                                         f"1/{request.early_stopping.reduction_factor} at rung {rung}",
                                         {"sweep_id": sweep.id, "rung": rung, "step": point.step, "value": point.value})


# ---- Trials ----------------------------------------------------------------------------------

def _created(jobs: list[Job]) -> int:
    """How many trials were created: the next trial's number (a deleted trial's number is not reused)."""
    return max((job.sweep_trial for job in jobs), default=-1) + 1


def _start_trials(session: Session, sweep: Sweep, request: SweepRequest, jobs: list[Job]) -> None:
    active = sum(job.status in ACTIVE_JOB_STATES for job in jobs)
    if _created(jobs) >= request.trial_count() or active >= request.max_concurrent_trials:
        return
    planned = planned_trials(request)
    while _created(jobs) < request.trial_count() and active < request.max_concurrent_trials:
        number = _created(jobs)
        values = planned[number] if planned is not None else ask_tpe(request, _outcomes(session, request, jobs))
        job = _create_trial(session, sweep, request, values, number)
        if job is None:
            return
        jobs.append(job)
        active += 1


def _create_trial(session: Session, sweep: Sweep, request: SweepRequest, values: dict[str, Any], number: int) -> Job | None:
    try:  # only tpe's values were not all checked up front
        spec = JobSpec.model_validate(trial_spec(request, values, number))
        problems = spec_problems(spec)
    except ValidationError as invalid:
        spec, problems = None, invalid.errors(include_url=False, include_context=False, include_input=False)
    if problems:
        where = ".".join(str(part) for part in problems[0]["loc"])
        message = f"trial {number}'s spec is invalid: {where}: {problems[0]['msg']}"
        sweep.error = {"code": "invalid_trial", "message": message}
        _end_with_active_cancelled(session, sweep, SweepStatus.FAILED, message,
                                   {"trial": number, "params": values, "problems": problems})
        return None
    job = lifecycle.create_job(session, tenant_id=sweep.tenant_id, spec=spec.model_dump(mode="json"),
                               dataset_id=spec.dataset_id, queue=sweep.queue, name=spec.name,
                               sweep_id=sweep.id, sweep_trial=number)
    job.spec = spec.model_copy(update={"output_dir": f"job-{job.id}"}).model_dump(mode="json")
    add_sweep_event(session, sweep.id, "trial.created", f"trial {number} is job {job.id}",
                    {"job_id": job.id, "trial": number, "params": values})
    return job


def _outcomes(session: Session, request: SweepRequest, jobs: list[Job]) -> list[Outcome]:
    finals = final_values(session, [job.id for job in jobs], request.metric.name)
    return [Outcome(params=trial_params(job, request), value=finals.get(job.id, (0, None))[1],
                    finished=job.status == JobStatus.SUCCEEDED or job.status not in ACTIVE_JOB_STATES)
            for job in jobs]


def trial_params(job: Job, request: SweepRequest) -> dict[str, Any]:
    """The trial's values of the swept paths, read from its spec."""
    params = {}
    for path in request.parameters:
        node: Any = job.spec
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        params[path] = node
    return params


# ---- The end ---------------------------------------------------------------------------------

def best_trial(session: Session, request: SweepRequest, jobs: list[Job]) -> dict[str, Any] | None:
    """The succeeded trial with the best final metric value (early stopped trials never ran to the
    end, so they do not compete)."""
    finals = final_values(session, [job.id for job in jobs if job.status == JobStatus.SUCCEEDED], request.metric.name)
    if not finals:
        return None
    pick = min if request.metric.goal == "minimize" else max
    job_id = pick(finals, key=lambda job_id: finals[job_id][1])
    job = next(job for job in jobs if job.id == job_id)
    return {"job_id": job.id, "trial": job.sweep_trial, "value": finals[job_id][1], "step": finals[job_id][0],
            "params": trial_params(job, request)}


def _finish_if_done(session: Session, sweep: Sweep, request: SweepRequest, jobs: list[Job]) -> None:
    if sweep.status != SweepStatus.RUNNING or _created(jobs) < request.trial_count():
        return
    if any(job.status in ACTIVE_JOB_STATES for job in jobs):
        return
    best = best_trial(session, request, jobs)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    if best is None:
        sweep.error = {"code": "no_result", "message": f"no trial succeeded with metric {request.metric.name}"}
        change_sweep_status(session, sweep, SweepStatus.FAILED, sweep.error["message"], {"trials": counts})
        return
    change_sweep_status(session, sweep, SweepStatus.SUCCEEDED,
                        f"best: trial {best['trial']} (job {best['job_id']}), {request.metric.name} {best['value']:.6g}",
                        {"best": best, "trials": counts})


# ---- A trial's training process --------------------------------------------------------------

def decide_at_rung(sweep_id: int, job_id: int) -> bool:
    """The trial logged its metric at a rung step: the controller decides now, and True when it
    stopped this trial (the training process then checkpoints and stops, as for a cancel)."""
    with session_scope() as session:
        advance(session, sweep_id)
        job = session.get(Job, job_id)
        return job.status == JobStatus.EARLY_STOPPING


def running_sweeps() -> list[int]:
    with session_scope() as session:
        return running_sweep_ids(session)


def advance_sweep_of(job_id: int) -> None:
    """The job ended an attempt: if it is a sweep's trial, its sweep goes on (in its own transaction)."""
    advance_now(job_id=job_id)
