"""Job events: every state change and notable moment of a job, readable by users."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Event
from db.sequence import next_seq
from db.delivery_outbox import record_deliveries

# One per logged training step (db/metrics.py): what OpenAI's metrics events show. The native
# events list leaves them out (GET /jobs/{id}/metrics has the points).
METRICS_LOGGED = "metrics.logged"


def add_event(
    session: Session,
    job_id: int,
    type: str,
    message: str,
    *,
    run_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    event = Event(job_id=job_id, run_id=run_id, type=type, message=message, data=data,
                  seq=next_seq(session, job_id))
    session.add(event)
    record_deliveries(session, event)
    return event


def list_events(
    session: Session, job_id: int, *, after: int | None, limit: int, with_metrics: bool = False
) -> list[Event]:
    """Oldest first; `after` is the id of the last event the client has seen."""
    query = select(Event).where(Event.job_id == job_id)
    if not with_metrics:
        query = query.where(Event.type != METRICS_LOGGED)
    if after is not None:
        query = query.where(Event.id > after)
    return list(session.scalars(query.order_by(Event.id).limit(limit)))


def list_events_newest_first(session: Session, job_id: int, *, before: int | None, limit: int) -> list[Event]:
    """Newest first; `before` is the id of the last (oldest) event the client has seen."""
    query = select(Event).where(Event.job_id == job_id)
    if before is not None:
        query = query.where(Event.id < before)
    return list(session.scalars(query.order_by(Event.id.desc()).limit(limit)))
