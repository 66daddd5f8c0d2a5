"""The deliveries a job event owes its tenant's webhook endpoints, written in the event's own
transaction and sent after it commits (a transactional outbox, as db/outbox.py for runs).

`add_event` (db/events.py) calls `record_deliveries`: one delivery row per subscribed endpoint,
with the payload fixed now, so an event that commits is never without its deliveries and a
rolled-back one has none. The rows are the queue (db/webhook_deliveries.py); the broker message
that asks a sender to deliver goes out after the commit."""

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.clock import database_now
from db.engine import session_scope
from db.hooks import after_commit
from db.models import Event, Job, WebhookDelivery, WebhookEndpoint, utcnow
from db.webhook_deliveries import due_deliveries, mark_dispatched
from db.webhooks import EVENT_TYPES, PENDING, event_payload
from traindock.broker import producer, send_delivery

log = logging.getLogger(__name__)


def record_deliveries(session: Session, event: Event) -> list[WebhookDelivery]:
    """A delivery of `event` for each of its job's tenant's endpoints subscribed to it."""
    webhook_type = EVENT_TYPES.get(event.type)
    if webhook_type is None:
        return []
    endpoints = [endpoint for endpoint in session.scalars(
        select(WebhookEndpoint).join(Job, Job.tenant_id == WebhookEndpoint.tenant_id).where(Job.id == event.job_id)
    ) if webhook_type in endpoint.event_types]
    if not endpoints:
        return []
    event.created_at = event.created_at or utcnow()
    session.flush()
    payload = event_payload(event, webhook_type)
    due = database_now(session)  # the clock the sender's claim compares with
    deliveries = [WebhookDelivery(endpoint_id=endpoint.id, job_id=event.job_id, event_id=event.id,
                                  event_type=webhook_type, payload=payload, status=PENDING, attempts=[],
                                  next_attempt_at=due, created_at=event.created_at)
                  for endpoint in endpoints]
    session.add_all(deliveries)
    session.flush()
    ids = [delivery.id for delivery in deliveries]
    after_commit(session, lambda: dispatch_deliveries(ids))
    return deliveries


def dispatch_deliveries(delivery_ids: list[int]) -> list[int]:
    """Ask a webhook sender to deliver each. Marked sent first (a sender that records its attempt
    clears the mark, and must not find it set again after); one the broker refuses is unmarked,
    and `send_due_deliveries` sends it later. Returns those sent."""
    if not delivery_ids:
        return []
    with session_scope() as session:
        mark_dispatched(session, delivery_ids)
    sent = []
    for delivery_id in delivery_ids:
        try:
            send_delivery(producer(), delivery_id)
        except Exception as exc:  # any broker or connection error
            log.warning("could not send webhook delivery %s: %r", delivery_id, exc)
            with session_scope() as session:
                mark_dispatched(session, delivery_ids[len(sent):], sent=False)
            break
        sent.append(delivery_id)
    return sent


def send_due_deliveries(dispatched_before: datetime) -> list[int]:
    """Retries that are due, deliveries never sent, and those whose message was sent before
    `dispatched_before` and never taken (lost with the broker)."""
    with session_scope() as session:
        due = due_deliveries(session, dispatched_before)
    return dispatch_deliveries(due)
