"""Jobs: submit, dry-run validation, list, show, events, metrics, checkpoints, downloads, logs,
deletion."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path as PathParam, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints, ValidationError

from api.archive import stored_tar_stream
from api.auth import CurrentTenant
from api.job_removal import delete_job
from api.deps import SessionDep, SettingsDep
from api.errors import AUTHENTICATED, NOT_FOUND, Message, body_problems, conflict_answer, not_found
from api.job_control import ResumeRequest, cancel_job, pause_job, resume_job
from api.job_service import all_problems, job_warnings, request_hash, submit_job
from api.memory_estimate import model_memory_estimate, smallest_live_gpu
from api.worker_fit import queue_of
from api.pagination import CursorQuery, LimitQuery, Page, next_cursor
from api.schemas import (
    CheckpointOut,
    EventOut,
    JobDetailOut,
    JobId,
    JobListItem,
    JobOut,
    JobSummaryOut,
    MetricPointOut,
    ResumedJob,
    SubmittedJob,
    ValidationReport,
)
from db import checkpoints as checkpoint_queries
from db import events as event_queries
from db import jobs as queries
from db import metric_series
from db import metrics as metric_queries
from db.datasets import get_dataset
from db.models import Job
from db.runs import latest_run
from db.workers import live_workers
from db.status import JobStatus
from jobspec import JobSpec, estimate, explain_unknown_fields
from jobspec.model import MAX_STEP
from traindock.paths import attempt_log_path, checkpoint_dir, job_output_dir, rank_log_path
from traindock.storage import get_store

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTHENTICATED)

VALIDATION_ERROR = {"$ref": "#/components/schemas/HTTPValidationError"}
# PostgreSQL cannot compare (or store) text with a NUL byte in it.
NO_NUL = r"^[^\x00]*$"
MetricName = Annotated[str, StringConstraints(max_length=128, pattern=NO_NUL)]

IdempotencyKey = Annotated[
    str | None,
    # Not empty: an empty key was stored and never looked up, so its second use hit the unique index.
    Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=NO_NUL,
           description="Same key and body return the first job; same key, other body: 409."),
]


def _job_or_404(session, job_id: int, tenant) -> Job:
    """Another tenant's job is 404 too: its existence is not revealed."""
    job = queries.get_job(session, job_id, tenant.id)
    if job is None:
        raise not_found("job", job_id)
    return job


def _check_job(session, job_id: int, tenant) -> None:
    """_job_or_404 for routes that need only to know the job is the tenant's."""
    if not queries.owns_job(session, job_id, tenant.id):
        raise not_found("job", job_id)


@router.post("", status_code=201, response_model=SubmittedJob,
             responses={200: {"model": SubmittedJob, "description": "Replay of an earlier request with the same Idempotency-Key"},
                        **conflict_answer("Idempotency-Key reused with a different body"),
                        429: {"model": Message, "description": "The tenant has too many queued jobs; see Retry-After",
                              "headers": {"Retry-After": {"description": "Seconds to wait",
                                                          "schema": {"type": "integer"}}}}})
def create_job(
    spec: JobSpec, response: Response, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
):
    body = spec.model_dump(mode="json")
    job, created = submit_job(session, settings, tenant.id, spec, request_hash(body), idempotency_key)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/jobs/{job.id}"
    warnings = job_warnings(session, settings, spec)
    return SubmittedJob.model_validate({**JobOut.model_validate(job).model_dump(), "warnings": warnings})


@router.post("/validate", response_model=ValidationReport)
def validate_job(
    tenant: CurrentTenant, session: SessionDep, settings: SettingsDep,
    body: Annotated[dict[str, Any], Body(description="A job spec, as for POST /jobs.")],
):
    """Dry run: the normalized spec, the errors POST /jobs would give, warnings (tuning tips;
    what only some of the queue's live workers can run, or that it has none) and estimates from
    the dataset's row count and, from the base model's config.json, of peak GPU memory. Nothing
    is stored."""
    try:
        spec = JobSpec.model_validate(body)
    except ValidationError as invalid:
        errors = explain_unknown_fields(body_problems(invalid.errors()))
        return ValidationReport(valid=False, spec=None, errors=errors, warnings=[], estimates=None)
    errors = all_problems(session, settings, tenant.id, spec)
    dataset = get_dataset(session, spec.dataset_id, tenant.id)
    queue = queue_of(spec, settings)
    gpu = smallest_live_gpu(live_workers(session, settings.heartbeat_timeout_s, queue), queue)
    return ValidationReport(
        valid=not errors,
        spec=spec.model_dump(mode="json"),
        errors=errors,
        warnings=job_warnings(session, settings, spec),
        estimates={**estimate(spec, dataset.rows), "memory": model_memory_estimate(spec, settings, gpu)} if dataset else None,
    )


@router.get("", response_model=Page[JobListItem])
def list_jobs(
    tenant: CurrentTenant,
    session: SessionDep,
    status: Annotated[list[JobStatus] | None, Query(description="Only jobs in these states.")] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
    include: Annotated[list[Literal["spec"]] | None, Query(
        description="`spec`: each job's spec too (left out by default; GET /jobs/{id} always has it).")] = None,
):
    with_spec = bool(include)
    jobs = queries.list_jobs(session, tenant.id, statuses=status, before=cursor, limit=limit, with_spec=with_spec)
    shape = JobOut if with_spec else JobSummaryOut
    return Page(items=[shape.model_validate(job) for job in jobs],
                next_cursor=next_cursor(jobs, limit, lambda job: job.id))


@router.get("/{job_id}", response_model=JobDetailOut, responses=NOT_FOUND)
def get_job(job_id: JobId, tenant: CurrentTenant, session: SessionDep):
    return _job_or_404(session, job_id, tenant)


@router.get("/{job_id}/events", response_model=Page[EventOut], responses=NOT_FOUND)
def list_events(
    job_id: JobId, tenant: CurrentTenant, session: SessionDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
):
    _check_job(session, job_id, tenant)
    items = event_queries.list_events(session, job_id, after=cursor, limit=limit)
    return Page(items=items, next_cursor=next_cursor(items, limit, lambda event: event.id))


@router.get("/{job_id}/metrics", response_model=Page[MetricPointOut], responses=NOT_FOUND)
def list_metrics(
    job_id: JobId, tenant: CurrentTenant, session: SessionDep,
    name: Annotated[list[MetricName] | None, Query(description="Only these metric names (repeatable).")] = None,
    min_step: Annotated[int | None, Query(ge=0, le=MAX_STEP)] = None,
    max_step: Annotated[int | None, Query(ge=0, le=MAX_STEP)] = None,
    cursor: Annotated[str | None, Query(max_length=200, pattern=NO_NUL,
                                        description="next_cursor of the previous page")] = None,
    limit: LimitQuery = 500,
    max_points: Annotated[int | None, Query(
        ge=4, le=10_000, description="Thin each series for a chart: at most this many points per name, "
        "keeping its first and last step and the lowest and highest value of each of (max_points - 2) // 2 "
        "equal step ranges. One page: cursor and limit do not apply.")] = None,
):
    _check_job(session, job_id, tenant)
    if max_points is not None:
        items = metric_series.downsample(session, job_id, names=name, min_step=min_step, max_step=max_step,
                                         max_points=max_points)
        return Page(items=items)
    items = metric_queries.list_metrics(
        session, job_id, names=name, min_step=min_step, max_step=max_step,
        after=metric_queries.parse_cursor(cursor), limit=limit,
    )
    return Page(items=items, next_cursor=next_cursor(items, limit, metric_queries.cursor_of))


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointOut], responses=NOT_FOUND)
def list_checkpoints(job_id: JobId, tenant: CurrentTenant, session: SessionDep):
    _check_job(session, job_id, tenant)
    return checkpoint_queries.list_checkpoints(session, job_id)


@router.post("/{job_id}/cancel", response_model=JobOut,
             responses={**NOT_FOUND, **conflict_answer("The job already finished")})
def cancel(job_id: JobId, tenant: CurrentTenant, session: SessionDep):
    """Queued or paused: cancelled at once (a queued job never trains). Running: `cancelling`; the
    worker writes a checkpoint of the current step, stops and frees the GPU, then `cancelled`.
    Idempotent."""
    return cancel_job(session, _job_or_404(session, job_id, tenant))


@router.post("/{job_id}/pause", response_model=JobOut,
             responses={**NOT_FOUND, **conflict_answer("The job finished or is being cancelled")})
def pause(job_id: JobId, tenant: CurrentTenant, session: SessionDep):
    """Queued: paused at once. Running: `pausing`; the worker writes a checkpoint of the current
    step, stops and frees the GPU, then `paused`. `POST /jobs/{id}/resume` continues from that
    checkpoint. Paused jobs do not count against the queued limit. Idempotent."""
    return pause_job(session, _job_or_404(session, job_id, tenant))


@router.post("/{job_id}/resume", response_model=ResumedJob, status_code=202,
             responses={**NOT_FOUND,
                        **conflict_answer("The job is active, or succeeded without an extension"),
                        422: {"description": "No usable checkpoint, or an override that cannot change",
                              "content": {"application/json": {"schema": VALIDATION_ERROR}}}})
def resume(job_id: JobId, tenant: CurrentTenant, session: SessionDep, request: ResumeRequest | None = None):
    """A new attempt continues from a checkpoint with optimizer, scheduler, RNG state and data
    position restored. From paused, cancelled and failed jobs, and from succeeded ones when the
    overrides extend training."""
    job, warnings = resume_job(session, _job_or_404(session, job_id, tenant), request or ResumeRequest())
    return ResumedJob.model_validate({**JobOut.model_validate(job).model_dump(), "warnings": warnings})


TAR = {200: {"content": {"application/x-tar": {}}, "description": "A tar of the folder, streamed"}}
StepPath = Annotated[int, PathParam(ge=1, le=MAX_STEP, description="A checkpoint's step.")]


def _tar_response(location: str, name: str) -> StreamingResponse:
    return StreamingResponse(stored_tar_stream(get_store(), location, name), media_type="application/x-tar",
                             headers={"Content-Disposition": f'attachment; filename="{name}.tar"'})


@router.get("/{job_id}/artifacts/final", response_class=StreamingResponse, responses={**TAR, **NOT_FOUND})
def download_final_model(job_id: JobId, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep):
    """The final model folder (the adapter for LoRA, with the tokenizer) as a tar."""
    job = _job_or_404(session, job_id, tenant)
    store = get_store()
    location = store.location_of(job_output_dir(settings.jobs_dir, job.tenant_id, job.spec.get("output_dir"),
                                                job.id) / "final")
    if not (job.result or {}).get("final_model_path") or not store.entries(location):
        raise not_found("final model of job", job_id)
    return _tar_response(location, f"job-{job.id}-final")


@router.get("/{job_id}/checkpoints/{step}/download", response_class=StreamingResponse,
            responses={**TAR, **NOT_FOUND})
def download_checkpoint(job_id: JobId, step: StepPath, tenant: CurrentTenant, session: SessionDep,
                        settings: SettingsDep):
    """A usable checkpoint folder (model, optimizer, scheduler and trainer state) as a tar."""
    job = _job_or_404(session, job_id, tenant)
    checkpoint = checkpoint_queries.usable_checkpoint(session, job.id, step)
    store = get_store()
    location = store.location_of(checkpoint_dir(
        job_output_dir(settings.jobs_dir, job.tenant_id, job.spec.get("output_dir"), job.id), step))
    if checkpoint is None or not store.exists(f"{location}/trainer_state.json"):
        raise not_found(f"checkpoint of job {job_id} at step", step)
    return _tar_response(location, f"job-{job.id}-checkpoint-{step}")


@router.get("/{job_id}/logs", response_class=StreamingResponse, responses={
    200: {"content": {"text/plain": {}}, "description": "The attempt's log as written so far"}, **NOT_FOUND})
def attempt_log(
    job_id: JobId, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep,
    attempt: Annotated[int | None, Query(ge=1, le=MAX_STEP, description="Attempt number; default the latest.")] = None,
    rank: Annotated[int | None, Query(ge=0, le=63, description="A job on several GPUs: this process's own "
                                      "log; default the launcher's (torchrun).")] = None,
    offset: Annotated[int, Query(ge=0, description="Bytes to skip: what a client following the log "
                                 "(`traindock logs --follow`) already has.")] = 0,
):
    """The training process's output (stdout and stderr) of one attempt."""
    job = _job_or_404(session, job_id, tenant)
    number = attempt or latest_run(session, job.id).attempt
    path = attempt_log_path(settings.logs_dir, job.id, number)
    if rank is not None:
        path = rank_log_path(path, rank)
    try:
        chunks = get_store().chunks(get_store().location_of(path), offset)
    except FileNotFoundError:
        raise not_found(f"log of job {job_id} attempt {number} rank" if rank is not None
                        else f"log of job {job_id} attempt", rank if rank is not None else number) from None
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")


@router.delete("/{job_id}", status_code=204, responses={**NOT_FOUND, **conflict_answer("The job is not finished")})
def remove_job(job_id: JobId, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep):
    """A finished job (succeeded, failed or cancelled) with its runs, events, metrics,
    checkpoints, output folder and logs. 409 while it is queued, running or paused; afterwards
    the job is 404."""
    delete_job(session, settings, _job_or_404(session, job_id, tenant))
    return Response(status_code=204)
