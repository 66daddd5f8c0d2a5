"""The webhook deliveries queue, kept in the database. A delivery is sent when it is due
(`next_attempt_at`) and is the oldest pending one of its (endpoint, job): a job's events reach an
endpoint in order, each after the one before succeeded or was given up. A sender claims it with
a lease (a conditional update, so of two senders one wins), posts it, and records the attempt:
success, or a retry after an exponential backoff, or, once it has been failing for
`webhook_retry_for_s`, given up."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session, aliased

from db.clock import database_now
from db.models import WebhookDelivery, WebhookEndpoint
from db.webhooks import FAILED, PENDING, SUCCEEDED, signing_secrets

# Longer than a send may take (webhook_timeout_s is at most 60 s): a sender that died holding
# a delivery releases it by this.
LEASE_S = 90
MAX_BACKOFF_FACTOR = 1440  # 10 s doubling -> at most 4 hours between attempts


@dataclass
class Claimed:
    delivery_id: int
    url: str
    secrets: list[str]
    payload: dict
    attempt: int


def retry_delay_s(failures: int, base_s: float) -> float:
    """After the n-th failed attempt: base, 2 x base, 4 x base ... at most 1440 x base."""
    return base_s * min(2 ** (failures - 1), MAX_BACKOFF_FACTOR)


def _is_chain_head():
    earlier = aliased(WebhookDelivery)
    return ~exists().where(and_(earlier.endpoint_id == WebhookDelivery.endpoint_id,
                                earlier.job_id == WebhookDelivery.job_id,
                                earlier.status == PENDING, earlier.id < WebhookDelivery.id))


def _sendable(now: datetime):
    return and_(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now,
                (WebhookDelivery.leased_until.is_(None)) | (WebhookDelivery.leased_until < now), _is_chain_head())


def claim_delivery(session: Session, delivery_id: int) -> Claimed | None:
    """The delivery to send now, leased to this sender; None when it is not due, not next in its
    chain, finished, or held by another sender."""
    now = database_now(session)
    claimed = session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery_id, _sendable(now))
        .values(leased_until=now + timedelta(seconds=LEASE_S)).execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        return None
    delivery = session.get(WebhookDelivery, delivery_id, populate_existing=True)
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    return Claimed(delivery.id, endpoint.url, signing_secrets(endpoint, now), delivery.payload,
                   len(delivery.attempts) + 1)


def record_attempt(session: Session, delivery_id: int, record: dict, succeeded: bool, *, retry_base_s: float,
                   retry_for_s: float) -> WebhookDelivery | None:
    """Log the attempt and decide what follows; returns the delivery (None if it is gone)."""
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True, populate_existing=True)
    if delivery is None:
        return None
    now = database_now(session)
    delivery.attempts = [*delivery.attempts, {"at": now.isoformat(), **record}]
    delivery.leased_until = None
    delivery.dispatched_at = None  # the message for this attempt is spent
    if succeeded:
        delivery.status, delivery.finished_at = SUCCEEDED, now
    elif now - delivery.created_at >= timedelta(seconds=retry_for_s):
        delivery.status, delivery.finished_at = FAILED, now
    else:
        delivery.next_attempt_at = now + timedelta(seconds=retry_delay_s(len(delivery.attempts), retry_base_s))
    return delivery


def next_in_chain(session: Session, delivery: WebhookDelivery) -> int | None:
    """The pending delivery that waited for `delivery` (same endpoint and job), if any."""
    return session.scalar(
        select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == delivery.endpoint_id,
                                         WebhookDelivery.job_id == delivery.job_id,
                                         WebhookDelivery.status == PENDING)
        .order_by(WebhookDelivery.id).limit(1)
    )


def due_deliveries(session: Session, dispatched_before: datetime) -> list[int]:
    """Deliveries to hand to a sender: sendable now, and either not sent for this attempt or sent
    before `dispatched_before` and still not taken (the broker lost the message)."""
    now = database_now(session)
    not_sent = (WebhookDelivery.dispatched_at.is_(None)) | (WebhookDelivery.dispatched_at < dispatched_before)
    return list(session.scalars(
        select(WebhookDelivery.id).where(_sendable(now), not_sent).order_by(WebhookDelivery.id).limit(500)
    ))


def mark_dispatched(session: Session, delivery_ids: list[int], sent: bool = True) -> None:
    """Their broker messages went out now (`sent=False`: did not go out after all)."""
    moment = database_now(session) if sent else None
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids)).values(dispatched_at=moment))


def list_deliveries(session: Session, endpoint_id: int, *, before: int | None, limit: int) -> list[WebhookDelivery]:
    """Newest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))
