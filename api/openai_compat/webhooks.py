"""/v1/webhook_endpoints: the `openai` client's webhooks.create/list/retrieve/update/delete/
rotate_secret/test and webhooks.event_types.list, on the native service (api/webhook_endpoints.py);
and each endpoint's deliveries with their attempts."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from api.auth import CurrentTenant
from api.deps import SessionDep, SettingsDep
from api.openai_compat import ids
from api.openai_compat.errors import OpenAIError
from api.openai_compat.objects import page, unix
from api.webhook_endpoints import (
    EndpointCreate, EndpointUpdate, SecretRotation, TestRequest, UrlRefused, create_endpoint, rotate_secret,
    send_test, update_endpoint,
)
from db.models import WebhookDelivery, WebhookEndpoint
from db.webhook_deliveries import list_deliveries
from db.webhooks import WEBHOOK_EVENT_TYPES, get_endpoint, list_endpoints
from traindock.webhook_signing import hint

router = APIRouter(tags=["webhooks"])
Limit = Annotated[int, Query(ge=1, le=100)]
After = Annotated[str | None, Query(max_length=64)]
DELIVERY = "msg_"  # a delivery's id is its webhook-id header


def endpoint_object(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    shown = {"id": ids.encode(ids.WEBHOOK_ENDPOINT, endpoint.id), "object": "webhook_endpoint",
             "name": endpoint.name, "url": endpoint.url, "event_types": endpoint.event_types,
             "signing_secret_hint": hint(endpoint.secret), "created_at": unix(endpoint.created_at),
             "updated_at": unix(endpoint.updated_at)}
    return {**shown, "signing_secret": endpoint.secret} if with_secret else shown


def delivery_object(delivery: WebhookDelivery) -> dict[str, Any]:
    return {"id": f"{DELIVERY}{delivery.id}", "object": "webhook_endpoint.delivery",
            "event_id": delivery.payload["id"], "event_type": delivery.event_type,
            "fine_tuning_job_id": ids.encode(ids.JOB, delivery.job_id), "status": delivery.status,
            "attempts": delivery.attempts, "created_at": unix(delivery.created_at),
            "next_attempt_at": unix(delivery.next_attempt_at) if delivery.status == "pending" else None,
            "finished_at": unix(delivery.finished_at)}


def endpoint_of(session, endpoint_id: str, tenant) -> WebhookEndpoint:
    endpoint = get_endpoint(session, ids.decode(ids.WEBHOOK_ENDPOINT, endpoint_id), tenant.id)
    if endpoint is None:
        raise OpenAIError(404, f"No such webhook endpoint: {endpoint_id}", param="webhook_endpoint_id",
                          code="webhook_endpoint_not_found")
    return endpoint


def _refused(refused: UrlRefused) -> OpenAIError:
    return OpenAIError(422, f"url: {refused}", param="url", code="url_refused")


@router.post("/webhook_endpoints")
def create(request: EndpointCreate, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep):
    try:
        return endpoint_object(create_endpoint(session, settings, tenant.id, request), with_secret=True)
    except UrlRefused as refused:
        raise _refused(refused) from None


@router.get("/webhook_endpoints")
def list_all(tenant: CurrentTenant, session: SessionDep, after: After = None, limit: Limit = 20):
    before = ids.decode(ids.WEBHOOK_ENDPOINT, after) if after else None
    if after and before is None:
        raise OpenAIError(400, f"after must be a {ids.WEBHOOK_ENDPOINT}- id, not {after!r}", param="after")
    found = list_endpoints(session, tenant.id, before=before, limit=limit + 1)
    return page([endpoint_object(endpoint) for endpoint in found[:limit]], len(found) > limit)


@router.get("/webhook_endpoints/{endpoint_id}")
def retrieve(endpoint_id: str, tenant: CurrentTenant, session: SessionDep):
    return endpoint_object(endpoint_of(session, endpoint_id, tenant))


@router.post("/webhook_endpoints/{endpoint_id}")
def update(endpoint_id: str, request: EndpointUpdate, tenant: CurrentTenant, session: SessionDep,
           settings: SettingsDep):
    try:
        return endpoint_object(update_endpoint(session, settings, endpoint_of(session, endpoint_id, tenant), request))
    except UrlRefused as refused:
        raise _refused(refused) from None


@router.delete("/webhook_endpoints/{endpoint_id}")
def delete(endpoint_id: str, tenant: CurrentTenant, session: SessionDep):
    session.delete(endpoint_of(session, endpoint_id, tenant))
    return {"id": endpoint_id, "object": "webhook_endpoint.deleted", "deleted": True}


@router.post("/webhook_endpoints/{endpoint_id}/rotate_secret")
def rotate(endpoint_id: str, tenant: CurrentTenant, session: SessionDep,
           request: Annotated[SecretRotation | None, Body()] = None):
    endpoint = rotate_secret(session, endpoint_of(session, endpoint_id, tenant), request or SecretRotation())
    return endpoint_object(endpoint, with_secret=True)


@router.post("/webhook_endpoints/{endpoint_id}/test")
def test(endpoint_id: str, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep,
         request: Annotated[TestRequest | None, Body()] = None):
    request = request or TestRequest()
    status_code, error = send_test(settings, endpoint_of(session, endpoint_id, tenant), request.event_type)
    return {"object": "webhook_endpoint.test", "webhook_endpoint_id": endpoint_id, "event_type": request.event_type,
            "success": True, "status_code": status_code, "error": error}


@router.get("/webhook_endpoints/{endpoint_id}/deliveries")
def deliveries(endpoint_id: str, tenant: CurrentTenant, session: SessionDep, after: After = None, limit: Limit = 20):
    endpoint = endpoint_of(session, endpoint_id, tenant)
    before = None
    if after:
        digits = after.removeprefix(DELIVERY)
        if not (after.startswith(DELIVERY) and digits.isascii() and digits.isdigit() and len(digits) <= 18):
            raise OpenAIError(400, f"after must be a {DELIVERY} id, not {after!r}", param="after")
        before = int(digits)
    found = list_deliveries(session, endpoint.id, before=before, limit=limit + 1)
    return page([delivery_object(delivery) for delivery in found[:limit]], len(found) > limit)


@router.get("/webhook_event_types")
def event_types():
    return {"object": "list", "data": list(WEBHOOK_EVENT_TYPES)}
