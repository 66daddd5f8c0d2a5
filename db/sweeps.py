"""Sweep rows: the lock, lookups, the trials, and the sweep's states. Like a job's, every change
of a sweep's status goes through `change_sweep_status`, which checks the table and writes one
event `sweep.<status>`."""

from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.lifecycle import TransitionRefused
from db.models import Job, MetricPoint, Sweep, SweepEvent, utcnow
from jobspec.sweep import SweepRequest


class SweepStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_SWEEP_STATES = {SweepStatus.SUCCEEDED, SweepStatus.FAILED, SweepStatus.CANCELLED}
SWEEP_TRANSITIONS: dict[SweepStatus | None, frozenset[SweepStatus]] = {
    None: frozenset({SweepStatus.RUNNING}),
    SweepStatus.RUNNING: frozenset(FINISHED_SWEEP_STATES),
    SweepStatus.SUCCEEDED: frozenset(),
    SweepStatus.FAILED: frozenset(),
    SweepStatus.CANCELLED: frozenset(),
}


class SweepTransitionRefused(TransitionRefused):
    """The sweep's state does not allow what was asked (the API answers 409)."""


def add_sweep_event(session: Session, sweep_id: int, type: str, message: str, data: dict[str, Any] | None = None) -> SweepEvent:
    event = SweepEvent(sweep_id=sweep_id, type=type, message=message, data=data)
    session.add(event)
    return event


def change_sweep_status(session: Session, sweep: Sweep, to: SweepStatus, message: str,
                        data: dict[str, Any] | None = None) -> SweepEvent:
    previous = SweepStatus(sweep.status) if sweep.status is not None else None
    if to not in SWEEP_TRANSITIONS[previous]:
        raise SweepTransitionRefused(f"sweep {sweep.id} is {previous}; it cannot become {to}")
    sweep.status = to
    sweep.updated_at = utcnow()
    sweep.finished_at = sweep.updated_at if to in FINISHED_SWEEP_STATES else None
    if sweep.id is None:
        session.flush()
    return add_sweep_event(session, sweep.id, f"sweep.{to}", message, {"from": previous, "to": to, **(data or {})})


def lock_sweep(session: Session, sweep_id: int) -> Sweep | None:
    """The sweep, re-read under its row's write lock (SQLite: the database write lock): the one
    controller acting on it until the transaction ends."""
    session.execute(update(Sweep).where(Sweep.id == sweep_id).values(updated_at=Sweep.updated_at))
    return session.get(Sweep, sweep_id, populate_existing=True)


def get_sweep(session: Session, sweep_id: int, tenant_id: int) -> Sweep | None:
    sweep = session.get(Sweep, sweep_id)
    return sweep if sweep is not None and sweep.tenant_id == tenant_id else None


def list_sweeps(session: Session, tenant_id: int, *, before: int | None, limit: int) -> list[Sweep]:
    query = select(Sweep).where(Sweep.tenant_id == tenant_id)
    if before is not None:
        query = query.where(Sweep.id < before)
    return list(session.scalars(query.order_by(Sweep.id.desc()).limit(limit)))


def running_sweep_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Sweep.id).where(Sweep.status == SweepStatus.RUNNING).order_by(Sweep.id)))


def trials(session: Session, sweep_id: int) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.sweep_trial, Job.id)))


def sweep_events(session: Session, sweep_id: int, type: str | None = None) -> list[SweepEvent]:
    query = select(SweepEvent).where(SweepEvent.sweep_id == sweep_id)
    if type is not None:
        query = query.where(SweepEvent.type == type)
    return list(session.scalars(query.order_by(SweepEvent.id)))


def metric_points(session: Session, job_ids: list[int], name: str, steps: list[int] | None = None) -> list[MetricPoint]:
    """The trials' points of one metric (only at `steps`, if given), oldest write first."""
    if not job_ids:
        return []
    query = select(MetricPoint).where(MetricPoint.job_id.in_(job_ids), MetricPoint.name == name)
    if steps is not None:
        query = query.where(MetricPoint.step.in_(steps))
    return list(session.scalars(query.order_by(MetricPoint.id)))


def final_values(session: Session, job_ids: list[int], name: str) -> dict[int, tuple[int, float]]:
    """Each trial's last point of the metric: {job id: (step, value)}."""
    last: dict[int, tuple[int, float]] = {}
    for point in metric_points(session, job_ids, name):
        if point.job_id not in last or point.step >= last[point.job_id][0]:
            last[point.job_id] = (point.step, point.value)
    return last


def rung_plan(session: Session, job_id: int) -> tuple[int | None, str | None, list[int]]:
    """(sweep id, metric, ASHA's rung steps) of a trial; (None, None, []) for any other job."""
    job = session.get(Job, job_id)
    sweep = session.get(Sweep, job.sweep_id) if job is not None and job.sweep_id is not None else None
    if sweep is None:
        return None, None, []
    request = SweepRequest.model_validate(sweep.request)
    return sweep.id, request.metric.name, request.rung_steps()
