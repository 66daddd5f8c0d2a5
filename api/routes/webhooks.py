"""Webhook endpoints of the native API: create (the signing secret is shown once), list, show,
update, delete, rotate the secret, send a test, and each delivery's attempts."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import CurrentTenant
from api.deps import SessionDep, SettingsDep
from api.errors import AUTHENTICATED, NOT_FOUND, not_found, problem, unprocessable
from api.pagination import CursorQuery, LimitQuery, Page, next_cursor
from api.webhook_endpoints import (
    EndpointCreate, EndpointUpdate, SecretRotation, TestRequest, UrlRefused, create_endpoint, rotate_secret,
    send_test, update_endpoint,
)
from db.models import WebhookEndpoint
from db.webhook_deliveries import list_deliveries
from db.webhooks import get_endpoint, list_endpoints
from jobspec.model import MAX_ID
from traindock.webhook_signing import hint

router = APIRouter(prefix="/webhook_endpoints", tags=["webhooks"], responses=AUTHENTICATED)
EndpointId = Annotated[int, Path(ge=1, le=MAX_ID, description="Id of one of your webhook endpoints.")]


class EndpointOut(BaseModel):
    id: int
    name: str
    url: str
    event_types: list[str]
    signing_secret_hint: str
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    signing_secret: str = Field(description="Shown only here, when created or rotated: keep it.")


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: int | None
    event_type: str
    job_id: int
    status: str = Field(description="pending (to send, or to retry at next_attempt_at), succeeded, or failed "
                        "(given up)")
    attempts: list[dict[str, Any]] = Field(description="Each attempt: at, status_code, error, duration_ms.")
    next_attempt_at: datetime | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any]


class TestResult(BaseModel):
    event_type: str
    status_code: int = Field(description="The receiver's answer; 0 when there was none.")
    error: str | None


def endpoint_out(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    shown = {"id": endpoint.id, "name": endpoint.name, "url": endpoint.url, "event_types": endpoint.event_types,
             "signing_secret_hint": hint(endpoint.secret), "created_at": endpoint.created_at,
             "updated_at": endpoint.updated_at}
    return {**shown, "signing_secret": endpoint.secret} if with_secret else shown


def _refused(refused: UrlRefused):
    return unprocessable([problem(("body", "url"), str(refused), "url_refused")])


def _endpoint_or_404(session, endpoint_id: int, tenant) -> WebhookEndpoint:
    endpoint = get_endpoint(session, endpoint_id, tenant.id)
    if endpoint is None:
        raise not_found("webhook endpoint", endpoint_id)
    return endpoint


@router.post("", status_code=201, response_model=EndpointWithSecret)
def create(request: EndpointCreate, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep):
    try:
        return endpoint_out(create_endpoint(session, settings, tenant.id, request), with_secret=True)
    except UrlRefused as refused:
        raise _refused(refused) from None


@router.get("", response_model=Page[EndpointOut])
def list_all(tenant: CurrentTenant, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = 50):
    found = list_endpoints(session, tenant.id, before=cursor, limit=limit)
    return Page(items=[endpoint_out(e) for e in found], next_cursor=next_cursor(found, limit, lambda e: e.id))


@router.get("/{endpoint_id}", response_model=EndpointOut, responses=NOT_FOUND)
def show(endpoint_id: EndpointId, tenant: CurrentTenant, session: SessionDep):
    return endpoint_out(_endpoint_or_404(session, endpoint_id, tenant))


@router.patch("/{endpoint_id}", response_model=EndpointOut, responses=NOT_FOUND)
def update(endpoint_id: EndpointId, request: EndpointUpdate, tenant: CurrentTenant, session: SessionDep,
           settings: SettingsDep):
    try:
        return endpoint_out(update_endpoint(session, settings, _endpoint_or_404(session, endpoint_id, tenant), request))
    except UrlRefused as refused:
        raise _refused(refused) from None


@router.delete("/{endpoint_id}", status_code=204, responses=NOT_FOUND)
def delete(endpoint_id: EndpointId, tenant: CurrentTenant, session: SessionDep):
    """Its pending deliveries go with it."""
    session.delete(_endpoint_or_404(session, endpoint_id, tenant))
    return Response(status_code=204)


@router.post("/{endpoint_id}/rotate_secret", response_model=EndpointWithSecret, responses=NOT_FOUND)
def rotate(endpoint_id: EndpointId, tenant: CurrentTenant, session: SessionDep,
           request: Annotated[SecretRotation | None, Body()] = None):
    endpoint = rotate_secret(session, _endpoint_or_404(session, endpoint_id, tenant), request or SecretRotation())
    return endpoint_out(endpoint, with_secret=True)


@router.post("/{endpoint_id}/test", response_model=TestResult, responses=NOT_FOUND)
def test(endpoint_id: EndpointId, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep,
         request: Annotated[TestRequest | None, Body()] = None):
    """Sends a signed sample event now (data.id `ftjob-test`) and says what the receiver answered."""
    request = request or TestRequest()
    status_code, error = send_test(settings, _endpoint_or_404(session, endpoint_id, tenant), request.event_type)
    return TestResult(event_type=request.event_type, status_code=status_code, error=error)


@router.get("/{endpoint_id}/deliveries", response_model=Page[DeliveryOut], responses=NOT_FOUND)
def deliveries(endpoint_id: EndpointId, tenant: CurrentTenant, session: SessionDep, cursor: CursorQuery = None,
               limit: LimitQuery = 50):
    """Newest first, each with every attempt."""
    _endpoint_or_404(session, endpoint_id, tenant)
    found = list_deliveries(session, endpoint_id, before=cursor, limit=limit)
    items = [DeliveryOut.model_validate(d).model_copy(update={"next_attempt_at": d.next_attempt_at
                                                               if d.status == "pending" else None}) for d in found]
    return Page(items=items, next_cursor=next_cursor(found, limit, lambda d: d.id))
