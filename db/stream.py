"""Reads for the live stream: job heads, what a job wrote after a stream number, status changes."""

from datetime import datetime

from sqlalchemy import Row, and_, or_, select
from sqlalchemy.orm import Session

from db.events import METRICS_LOGGED
from db.models import Event, Job, MetricPoint, SweepEvent


def heads(session: Session, job_ids: list[int]) -> list[Row]:
    """Each job's last stream number with what a stream needs from the row itself."""
    return list(session.execute(
        select(Job.id, Job.status, Job.stream_seq, Job.progress_seq, Job.progress, Job.error, Job.result)
        .where(Job.id.in_(job_ids))
    ))


def written_between(
    session: Session, ranges: dict[int, tuple[int, int]]
) -> tuple[list[Event], list[MetricPoint]]:
    """Events and metric points numbered in (after, up_to] for each job: {job_id: (after, up_to)}."""

    def within(model, *conditions) -> list:
        return list(session.scalars(select(model).where(or_(*(
            and_(model.job_id == job_id, model.seq > after, model.seq <= up_to)
            for job_id, (after, up_to) in ranges.items()
        )), *conditions).order_by(model.job_id, model.seq)))

    # The metrics messages carry the points already; their log events are for the /v1 event list.
    return within(Event, Event.type != METRICS_LOGGED), within(MetricPoint)


LIST_COLUMNS = (Job.id, Job.tenant_id, Job.name, Job.status, Job.error, Job.sweep_id)


def list_rows(session: Session, tenant_ids: list[int]) -> list[Row]:
    """What a live list shows of each of these tenants' jobs."""
    return list(session.execute(select(*LIST_COLUMNS).where(Job.tenant_id.in_(tenant_ids)).order_by(Job.id)))


def list_rows_changed_since(session: Session, tenant_ids: list[int], since: datetime) -> list[Row]:
    return list(session.execute(
        select(*LIST_COLUMNS).where(Job.tenant_id.in_(tenant_ids), Job.updated_at >= since).order_by(Job.id)
    ))


def sweep_events_after(session: Session, cursors: dict[int, int]) -> list[SweepEvent]:
    """Each sweep's events after its cursor: {sweep_id: last event id seen}."""
    return list(session.scalars(select(SweepEvent).where(or_(*(
        and_(SweepEvent.sweep_id == sweep_id, SweepEvent.id > after) for sweep_id, after in cursors.items()
    ))).order_by(SweepEvent.id)))
