"""Creating a sweep: the whole request is checked up front (every planned trial's spec must pass the
job-spec rules and the server's checks), then stored, and its controller starts the first trials in
the same transaction (db/sweep_control.py)."""

from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.errors import body_problems, problem, unprocessable
from api.job_checks import server_problems
from api.job_service import all_problems
from db import jobs as job_queries
from db.models import Job, Sweep
from db.sweep_control import advance, best_trial, trial_params
from db.sweep_search import planned_trials
from db.sweeps import SweepStatus, change_sweep_status, final_values, trials
from db.tenants import lock_tenant
from jobspec import JobSpec, spec_problems
from jobspec.sweep import SweepRequest, request_problems, trial_spec
from traindock.settings import Settings


def create_sweep(session: Session, settings: Settings, tenant_id: int, request: SweepRequest) -> Sweep:
    lock_tenant(session, tenant_id)
    if problems := request_problems(request):
        raise unprocessable(body_problems(problems))
    if problems := all_problems(session, settings, tenant_id, request.base):
        raise unprocessable([problem(("body", "base", *p["loc"][1:]), p["msg"], p["type"]) for p in problems])
    if problems := _trial_problems(session, settings, tenant_id, request):
        raise unprocessable(body_problems(problems))
    queued = job_queries.count_queued(session, tenant_id)
    if queued + request.max_concurrent_trials > settings.max_queued_jobs_per_tenant:
        raise HTTPException(429, f"this tenant has {queued} queued jobs; {request.max_concurrent_trials} more "
                                 f"would pass the limit of {settings.max_queued_jobs_per_tenant}",
                            headers={"Retry-After": "60"})
    sweep = Sweep(tenant_id=tenant_id, name=request.name, method=request.method,
                  request=request.model_dump(mode="json"),
                  queue=request.base.resources.queue or settings.default_queue)
    session.add(sweep)
    change_sweep_status(session, sweep, SweepStatus.RUNNING,
                        f"{request.method} sweep of {request.trial_count()} trials over {', '.join(request.parameters)}")
    advance(session, sweep.id)
    return sweep


def _candidates(request: SweepRequest) -> list[dict[str, Any]]:
    """The trials to check: all of them when they are known (grid, random); for tpe, each
    parameter at each end of its range (or each of its values), the others at their first."""
    planned = planned_trials(request)
    if planned is not None:
        return planned
    ends = {path: (p.values if p.values is not None else [p.low, p.high]) for path, p in request.parameters.items()}
    for path, p in request.parameters.items():
        if p.distribution == "int":
            ends[path] = [int(v) for v in ends[path]]
    first = {path: values[0] for path, values in ends.items()}
    return [first] + [{**first, path: value} for path, values in ends.items() for value in values[1:]]


def _trial_problems(session: Session, settings: Settings, tenant_id: int, request: SweepRequest) -> list[dict[str, Any]]:
    """The first problem of each parameter (or of base) found in a trial's spec, naming the trial:
    the job-spec rules and the server's checks, as POST /jobs runs them."""
    found: dict[str, dict[str, Any]] = {}
    for number, values in enumerate(_candidates(request)):
        try:
            spec = JobSpec.model_validate(trial_spec(request, values, number))
            problems = spec_problems(spec) + server_problems(session, settings, tenant_id, spec)
        except ValidationError as invalid:
            problems = invalid.errors(include_url=False)
        for p in problems:
            loc = ".".join(str(part) for part in p["loc"])
            path = next((path for path in values if loc == path or loc.startswith(path + ".")), None)
            where = ("parameters", path) if path else ("base", *p["loc"])
            setting = ", ".join(f"{k}={v!r}" for k, v in values.items())
            found.setdefault(path or loc, problem(where, f"trial {number} ({setting}): {p['msg']}", p["type"]))
    return list(found.values())


def sweep_view(session: Session, sweep: Sweep, *, with_trials: bool = True) -> dict[str, Any]:
    """The sweep as the API shows it: the request, each trial's parameters, status and metric, the best."""
    request = SweepRequest.model_validate(sweep.request)
    jobs = trials(session, sweep.id)
    view = {
        "id": sweep.id, "name": sweep.name, "status": sweep.status, "method": sweep.method,
        "metric": request.metric.model_dump(), "parameters": {k: v.model_dump(exclude_none=True) for k, v in request.parameters.items()},
        "max_trials": request.trial_count(), "max_concurrent_trials": request.max_concurrent_trials,
        "early_stopping": request.early_stopping.model_dump() if request.early_stopping else None,
        "rung_steps": request.rung_steps(), "error": sweep.error, "created_at": sweep.created_at,
        "updated_at": sweep.updated_at, "finished_at": sweep.finished_at, "trial_count": len(jobs),
        "best": best_trial(session, request, jobs),
    }
    if with_trials:
        view["trials"] = _trials_view(session, request, jobs)
    return view


def _trials_view(session: Session, request: SweepRequest, jobs: list[Job]) -> list[dict[str, Any]]:
    finals = final_values(session, [job.id for job in jobs], request.metric.name)
    return [{"trial": job.sweep_trial, "job_id": job.id, "status": job.status, "params": trial_params(job, request),
             "metric": finals.get(job.id, (None, None))[1], "metric_step": finals.get(job.id, (None, None))[0],
             "started_at": job.started_at, "finished_at": job.finished_at} for job in jobs]
