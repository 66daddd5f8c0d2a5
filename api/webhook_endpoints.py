"""Webhook endpoints as both APIs manage them (api/routes/webhooks.py natively,
api/openai_compat/webhooks.py for the `openai` client): the requests, the URL rule, secrets shown
once, rotation, and the test send."""

import json
import secrets as random
import time
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from db.models import WebhookEndpoint, utcnow
from db.webhooks import WEBHOOK_EVENT_TYPES, signing_secrets, webhook_event_type
from traindock.settings import Settings
from traindock.webhook_http import post
from traindock.webhook_signing import new_secret, signed_headers
from traindock.webhook_urls import MAX_URL_LENGTH, UnsafeUrl, check

OLD_SECRET_KEPT = timedelta(hours=24)


def _event_type(name: str) -> str:
    known = webhook_event_type(name)
    if known is None:
        raise ValueError(f"unknown event type {name!r}; one of {', '.join(WEBHOOK_EVENT_TYPES)}")
    return known


EventType = Annotated[str, Field(max_length=64), AfterValidator(_event_type)]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=len(WEBHOOK_EVENT_TYPES))]
Url = Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)]
Name = Annotated[str, Field(max_length=255, pattern=r"^[^\x00]*$")]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url = Field(description="The HTTPS URL that receives deliveries; must resolve to public addresses.")
    event_types: EventTypes = Field(description=f"Any of {', '.join(WEBHOOK_EVENT_TYPES)} (or the job event's "
                                    "own name, e.g. job.running).")
    name: Name = ""


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    event_types: EventTypes | None = None
    name: Name | None = None


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_old_secret_active_for_24_hours: bool = Field(
        False, description="Sign deliveries with the old secret as well for 24 hours.")


class TestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: EventType = "fine_tuning.job.succeeded"


class UrlRefused(ValueError):
    """The URL (field `url`) is not one the service may call; the message says why."""


def checked_url(url: str, settings: Settings) -> str:
    try:
        check(url, allow_private=settings.webhook_allow_private_urls)
    except UnsafeUrl as refused:
        raise UrlRefused(str(refused)) from None
    return url


def create_endpoint(session: Session, settings: Settings, tenant_id: int, request: EndpointCreate) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(tenant_id=tenant_id, name=request.name, url=checked_url(request.url, settings),
                               event_types=list(dict.fromkeys(request.event_types)), secret=new_secret())
    session.add(endpoint)
    session.flush()
    return endpoint


def update_endpoint(session: Session, settings: Settings, endpoint: WebhookEndpoint,
                    request: EndpointUpdate) -> WebhookEndpoint:
    if request.url is not None and request.url != endpoint.url:
        endpoint.url = checked_url(request.url, settings)
    if request.event_types is not None:
        endpoint.event_types = list(dict.fromkeys(request.event_types))
    if request.name is not None:
        endpoint.name = request.name
    session.flush()
    return endpoint


def rotate_secret(session: Session, endpoint: WebhookEndpoint, request: SecretRotation) -> WebhookEndpoint:
    """A new secret, shown once; the old one signs along for 24 hours if asked, else stops now."""
    kept = request.keep_old_secret_active_for_24_hours
    endpoint.previous_secret = endpoint.secret if kept else None
    endpoint.previous_secret_until = utcnow() + OLD_SECRET_KEPT if kept else None
    endpoint.secret = new_secret()
    endpoint.updated_at = utcnow()
    session.flush()
    return endpoint


def send_test(settings: Settings, endpoint: WebhookEndpoint, event_type: str) -> tuple[int, str | None]:
    """A sample event, signed and sent now, as a delivery would be: (status code or 0, error)."""
    body = json.dumps({"id": f"evt_test_{random.token_hex(8)}", "object": "event", "created_at": int(time.time()),
                       "type": event_type, "data": {"id": "ftjob-test", "test": True}}).encode()
    headers = signed_headers(signing_secrets(endpoint, utcnow()), f"msg_test_{random.token_hex(8)}", int(time.time()), body)
    outcome = post(endpoint.url, body, headers, allow_private=settings.webhook_allow_private_urls,
                   timeout_s=settings.webhook_timeout_s)
    return outcome.status_code or 0, outcome.error
