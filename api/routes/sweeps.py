"""Sweeps: create (a hyperparameter search whose trials are jobs), list, show, cancel, stream."""

from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from api.auth import CurrentTenant
from api.deps import SessionDep, SettingsDep
from api.errors import AUTHENTICATED, NOT_FOUND, Message, conflict, conflict_answer, not_found
from api.pagination import CursorQuery, LimitQuery, Page, next_cursor
from api.routes.stream import EVENT_STREAM, PING_S, _relay, follower
from api.sweep_service import create_sweep, sweep_view
from db import sweeps as queries
from db.engine import get_sessionmaker
from db.sweep_control import cancel_sweep
from jobspec.model import MAX_ID
from jobspec.sweep import SweepRequest

router = APIRouter(prefix="/sweeps", tags=["sweeps"], responses=AUTHENTICATED)

SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="Id of one of your sweeps.")]


class TrialOut(BaseModel):
    trial: int
    job_id: int
    status: str
    params: dict[str, Any]
    metric: float | None
    metric_step: int | None
    started_at: datetime | None
    finished_at: datetime | None


class SweepSummaryOut(BaseModel):
    id: int
    name: str | None
    status: str
    method: str
    metric: dict[str, Any]
    parameters: dict[str, Any]
    max_trials: int
    max_concurrent_trials: int
    early_stopping: dict[str, Any] | None
    rung_steps: list[int]
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    trial_count: int
    best: dict[str, Any] | None


class SweepOut(SweepSummaryOut):
    trials: list[TrialOut]


class SweepEventOut(BaseModel):
    id: int
    type: str
    message: str
    data: dict[str, Any] | None
    created_at: datetime


def _sweep_or_404(session, sweep_id: int, tenant):
    sweep = queries.get_sweep(session, sweep_id, tenant.id)
    if sweep is None:
        raise not_found("sweep", sweep_id)
    return sweep


@router.post("", status_code=201, response_model=SweepOut,
             responses={429: {"model": Message, "description": "The trials to queue now would pass the tenant's "
                              "queued-job limit; see Retry-After"}})
def create(request: SweepRequest, response: Response, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep):
    """Checks every trial's spec up front (a bad path or value is a 422 naming it), stores the sweep
    and queues its first trials (at most max_concurrent_trials at once)."""
    sweep = create_sweep(session, settings, tenant.id, request)
    response.headers["Location"] = f"/sweeps/{sweep.id}"
    return sweep_view(session, sweep)


@router.get("", response_model=Page[SweepSummaryOut])
def list_sweeps(tenant: CurrentTenant, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = 50):
    sweeps = queries.list_sweeps(session, tenant.id, before=cursor, limit=limit)
    return Page(items=[sweep_view(session, sweep, with_trials=False) for sweep in sweeps],
                next_cursor=next_cursor(sweeps, limit, lambda sweep: sweep.id))


@router.get("/{sweep_id}", response_model=SweepOut, responses=NOT_FOUND)
def get_sweep(sweep_id: SweepId, tenant: CurrentTenant, session: SessionDep):
    """The sweep with its trials (parameters, status, last value of the metric) and the best trial."""
    return sweep_view(session, _sweep_or_404(session, sweep_id, tenant))


@router.get("/{sweep_id}/events", response_model=list[SweepEventOut], responses=NOT_FOUND)
def list_sweep_events(sweep_id: SweepId, tenant: CurrentTenant, session: SessionDep):
    """The sweep's own events: its states, trials created, ASHA's rung decisions."""
    return queries.sweep_events(session, _sweep_or_404(session, sweep_id, tenant).id)


@router.post("/{sweep_id}/cancel", response_model=SweepOut,
             responses={**NOT_FOUND, **conflict_answer("The sweep already finished")})
def cancel(sweep_id: SweepId, tenant: CurrentTenant, session: SessionDep):
    """The sweep ends cancelled and its active trials are cancelled (a running one checkpoints and
    stops). Idempotent."""
    sweep = _sweep_or_404(session, sweep_id, tenant)
    if sweep.status not in ("running", "cancelled"):
        raise conflict(f"sweep {sweep.id} is {sweep.status}; only a running sweep can be cancelled")
    return sweep_view(session, cancel_sweep(session, sweep.id))


def _owns(sweep_id: int, tenant_id: int) -> bool:
    with get_sessionmaker()() as session:
        return queries.get_sweep(session, sweep_id, tenant_id) is not None


@router.get("/{sweep_id}/stream", response_class=EventSourceResponse, responses={**EVENT_STREAM, **NOT_FOUND})
async def stream_sweep(sweep_id: SweepId, request: Request, tenant: CurrentTenant):
    """The tenant's live job list (GET /jobs/stream) narrowed to this sweep's trials: a `status`
    event for each active trial, then one whenever a trial changes state (trials started later
    included); and a `sweep` event for each of the sweep's own events, from its first."""
    if not await anyio.to_thread.run_sync(_owns, sweep_id, tenant.id):
        raise not_found("sweep", sweep_id)
    client = follower(request).follow_tenant(tenant.id, sweep_id=sweep_id)
    return EventSourceResponse(_relay(follower(request), client), ping=PING_S)
