"""Webhook endpoints, and what a job event owes them: which events they get and the payload.
The deliveries themselves are written and sent by db/delivery_outbox.py."""

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Event, WebhookEndpoint, utcnow

# Job event type -> the webhook event type endpoints subscribe to. The first four are OpenAI's
# fine-tuning webhook events (a sweep's early stopped trial is one of OpenAI's cancelled jobs, as
# /v1 shows it; its data.status says early_stopped); the rest are traindock's own, named alike.
EVENT_TYPES = {
    "job.succeeded": "fine_tuning.job.succeeded",
    "job.failed": "fine_tuning.job.failed",
    "job.cancelled": "fine_tuning.job.cancelled",
    "job.early_stopped": "fine_tuning.job.cancelled",
    "job.running": "fine_tuning.job.running",
    "job.paused": "fine_tuning.job.paused",
    "checkpoint.saved": "fine_tuning.job.checkpoint.saved",
}
WEBHOOK_EVENT_TYPES = tuple(dict.fromkeys(EVENT_TYPES.values()))
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


def webhook_event_type(name: str) -> str | None:
    """The webhook event type `name` means: its own name, or the job event's (`job.running`)."""
    return name if name in WEBHOOK_EVENT_TYPES else EVENT_TYPES.get(name)


def get_endpoint(session: Session, endpoint_id: int | None, tenant_id: int) -> WebhookEndpoint | None:
    """Another tenant's endpoint is None, as an unknown one."""
    endpoint = session.get(WebhookEndpoint, endpoint_id) if endpoint_id else None
    return endpoint if endpoint is not None and endpoint.tenant_id == tenant_id else None


def list_endpoints(session: Session, tenant_id: int, *, before: int | None, limit: int) -> list[WebhookEndpoint]:
    """Newest first."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
    if before is not None:
        query = query.where(WebhookEndpoint.id < before)
    return list(session.scalars(query.order_by(WebhookEndpoint.id.desc()).limit(limit)))


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one while a
    rotation keeps it valid."""
    keep_previous = endpoint.previous_secret and endpoint.previous_secret_until and endpoint.previous_secret_until > now
    return [endpoint.secret, endpoint.previous_secret] if keep_previous else [endpoint.secret]


def event_payload(event: Event, webhook_type: str) -> dict[str, Any]:
    """OpenAI's webhook event object; `data.id` is the job's OpenAI-style id (as /v1 names it)."""
    details = event.data or {}
    data: dict[str, Any] = {"id": f"ftjob-{event.job_id}", "job_id": event.job_id}
    for source, target in (("to", "status"), ("attempt", "attempt"), ("error", "error"), ("step", "step")):
        if details.get(source) is not None:
            data[target] = details[source]
    created = event.created_at or utcnow()
    return {"id": f"evt_{event.id}", "object": "event", "created_at": int(created.timestamp()),
            "type": webhook_type, "data": data}
