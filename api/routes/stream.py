"""Live stream (Server-Sent Events): a job's events, metrics and progress; a tenant's job list."""

from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse

from api.auth import CurrentTenant
from api.errors import AUTHENTICATED, NOT_FOUND, not_found
from api.schemas import JobId
from api.stream_follower import END, StreamFollower
from db import jobs as job_queries
from db.engine import get_sessionmaker

router = APIRouter(prefix="/jobs", tags=["stream"], responses=AUTHENTICATED)

PING_S = 15
EVENT_STREAM = {200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}}

LastEventId = Annotated[int | None, Header(
    alias="Last-Event-ID", ge=0, le=2**63 - 1,
    description="The id of the last event received: the stream goes on after it.",
)]


def follower(request: Request) -> StreamFollower:
    return request.app.state.stream_follower


async def _relay(follower: StreamFollower, client):
    try:
        while (message := await client.queue.get()) is not END:
            yield message.sse()
    finally:
        follower.leave(client)


def _owns(job_id: int, tenant_id: int) -> bool:
    with get_sessionmaker()() as session:
        return job_queries.get_job(session, job_id, tenant_id) is not None


@router.get("/stream", response_class=EventSourceResponse, responses=EVENT_STREAM)
async def stream_jobs(request: Request, tenant: CurrentTenant):
    """For live lists: first a `status` event (data: id, name, status, error) for each of your
    active jobs, then one whenever a job of yours changes state. Not numbered: a reconnect starts
    again from the active jobs."""
    client = follower(request).follow_tenant(tenant.id)
    return EventSourceResponse(_relay(follower(request), client), ping=PING_S)


@router.get("/{job_id}/stream", response_class=EventSourceResponse, responses={**EVENT_STREAM, **NOT_FOUND})
async def stream_job(job_id: JobId, request: Request, tenant: CurrentTenant, last_event_id: LastEventId = None):
    """Everything the job has written (`status`, `progress`, `metrics`, `checkpoint`, `event`), then
    live until its terminal status. Event ids increase per job; send the last one as
    `Last-Event-ID` to go on after it without gaps or repeats."""
    if not await anyio.to_thread.run_sync(_owns, job_id, tenant.id):
        raise not_found("job", job_id)
    client = follower(request).follow_job(job_id, last_event_id or 0)
    return EventSourceResponse(_relay(follower(request), client), ping=PING_S)
