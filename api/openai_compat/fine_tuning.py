"""/v1/fine_tuning/jobs: create, list, retrieve, cancel, pause, resume, events, checkpoints, on
the native services (api.job_service.submit_job, api.job_control)."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
from pydantic import ValidationError

from api.auth import CurrentTenant
from api.deps import SessionDep, SettingsDep
from api.errors import body_problems, unprocessable
from api.job_control import ResumeRequest, cancel_job, pause_job, resume_job
from api.job_service import request_hash, submit_job
from api.openai_compat import ids
from api.openai_compat.errors import OpenAIError
from api.openai_compat.job_request import (
    DpoHyperparameters, Hyperparameters, OpenAIJobRequest, apply_hyperparameters, apply_method,
    method_hyperparameters, split_body,
)
from api.openai_compat.models import checkpoint_source, fine_tuned_job
from api.openai_compat.objects import checkpoint_object, event_object, job_object, page
from db import checkpoints as checkpoint_queries
from db import events as event_queries
from db import jobs as queries
from db.datasets import get_dataset
from db.models import Job
from jobspec import JobSpec

router = APIRouter(prefix="/fine_tuning/jobs", tags=["fine-tuning"])
Limit = Annotated[int, Query(ge=1, le=1000)]
After = Annotated[str | None, Query(max_length=64)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                              pattern=r"^[^\x00]*$")]


def job_of(session, job_id: str, tenant) -> Job:
    number = ids.decode(ids.JOB, job_id)
    job = queries.get_job(session, number, tenant.id) if number else None
    if job is None:
        raise OpenAIError(404, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id", code="job_not_found")
    return job


def cursor(prefix: str, after: str | None) -> int | None:
    if not after:
        return None
    number = ids.decode(prefix, after)
    if number is None:
        raise OpenAIError(400, f"after must be a {prefix}- id, not {after!r}", param="after")
    return number


def _validated(model, data: dict[str, Any], *prefix: str):
    try:
        return model.model_validate(data)
    except ValidationError as invalid:
        raise unprocessable(body_problems([{**error, "loc": (*prefix, *error["loc"])}
                                           for error in invalid.errors()])) from None


def _file(session, tenant, text: str | None, param: str) -> int | None:
    if text is None:
        return None
    number = ids.decode(ids.FILE, text)
    if number is None or get_dataset(session, number, tenant.id) is None:
        raise OpenAIError(400, f"invalid {param}: no file {text!r}", param=param, code="invalid_file")
    return number


def _starting_point(session, tenant, model: str) -> dict[str, Any]:
    """Spec fields for `model`: a base model by name; a checkpoint continues from that step
    (weights, optimizer, schedule); a fine-tuned model trains further from its final weights."""
    if not model.startswith("ft:"):
        return {"base_model": model}
    if (source := checkpoint_source(session, tenant, model)) is not None:
        earlier, step = source
        start = {"resume_from_checkpoint": {"job_id": earlier.id, "step": step}}
    else:
        earlier = fine_tuned_job(session, tenant, model, param="model")
        start = {"init_from_job_id": earlier.id}
    return {**start, **{field: earlier.spec[field] for field in ("base_model", "method", "lora")}}


def spec_from_request(session, tenant, body: dict[str, Any]) -> tuple[JobSpec, dict[str, Any]]:
    """The job spec and what the job keeps of the OpenAI request."""
    openai_fields, spec, method = split_body(body)
    request = _validated(OpenAIJobRequest, openai_fields)
    if request.integrations:
        raise OpenAIError(400, "integrations are not supported; use extra_body training.report_to",
                          param="integrations")
    kind, method_given = method_hyperparameters(method)
    given = request.hyperparameters or _validated(DpoHyperparameters if kind == "dpo" else Hyperparameters,
                                                  method_given or {}, "method", kind, "hyperparameters")
    spec.update(_starting_point(session, tenant, request.model))
    spec["dataset_id"] = _file(session, tenant, request.training_file, "training_file")
    training = spec.setdefault("training", {})
    if not isinstance(training, dict):
        raise OpenAIError(400, "training must be an object", param="training")
    training.setdefault("logging_steps", 1)  # a metrics event per step, as OpenAI reports
    if (validation := _file(session, tenant, request.validation_file, "validation_file")) is not None:
        spec["validation_dataset_id"] = validation
        training.setdefault("eval_strategy", "epoch")
    if request.seed is not None:
        training["seed"] = request.seed
    if request.suffix:
        spec.setdefault("name", request.suffix)
    apply_hyperparameters(spec, given)
    apply_method(spec, kind, given)
    kept = {"model": request.model, "suffix": request.suffix, "metadata": request.metadata,
            "hyperparameters": given.model_dump()}
    return _validated(JobSpec, spec), kept


@router.post("")
def create_job(
    tenant: CurrentTenant, session: SessionDep, settings: SettingsDep,
    body: Annotated[dict[str, Any], Body()], idempotency_key: IdempotencyKey = None,
):
    spec, kept = spec_from_request(session, tenant, body)
    job, created = submit_job(session, settings, tenant.id, spec, request_hash(body), idempotency_key)
    if created:
        job.openai = kept
        session.flush()
    return job_object(job)


@router.get("")
def list_jobs(request: Request, tenant: CurrentTenant, session: SessionDep, after: After = None, limit: Limit = 20):
    """`metadata[key]=value` query parameters (the client's `metadata={...}`) filter by metadata."""
    metadata = {key[len("metadata["):-1]: value for key, value in request.query_params.items()
                if key.startswith("metadata[") and key.endswith("]")}
    found = queries.list_jobs(session, tenant.id, statuses=None, before=cursor(ids.JOB, after), limit=limit + 1,
                              metadata=metadata)
    return page([job_object(job) for job in found[:limit]], len(found) > limit)


@router.get("/{job_id}")
def retrieve_job(job_id: str, tenant: CurrentTenant, session: SessionDep):
    return job_object(job_of(session, job_id, tenant))


@router.post("/{job_id}/cancel")
def cancel(job_id: str, tenant: CurrentTenant, session: SessionDep):
    return job_object(cancel_job(session, job_of(session, job_id, tenant)))


@router.post("/{job_id}/pause")
def pause(job_id: str, tenant: CurrentTenant, session: SessionDep):
    return job_object(pause_job(session, job_of(session, job_id, tenant)))


@router.post("/{job_id}/resume")
def resume(job_id: str, tenant: CurrentTenant, session: SessionDep):
    job, _warnings = resume_job(session, job_of(session, job_id, tenant), ResumeRequest())
    return job_object(job)


@router.get("/{job_id}/events")
def list_events(job_id: str, tenant: CurrentTenant, session: SessionDep, after: After = None, limit: Limit = 20):
    job = job_of(session, job_id, tenant)
    found = event_queries.list_events_newest_first(session, job.id, before=cursor(ids.EVENT, after), limit=limit + 1)
    return page([event_object(event) for event in found[:limit]], len(found) > limit)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(job_id: str, tenant: CurrentTenant, session: SessionDep, after: After = None, limit: Limit = 10):
    job = job_of(session, job_id, tenant)
    below = None
    if (checkpoint_id := cursor(ids.CHECKPOINT, after)) is not None:
        seen = checkpoint_queries.get_checkpoint(session, checkpoint_id)
        if seen is None or seen.job_id != job.id:
            raise OpenAIError(400, f"after names no checkpoint of {job_id}: {after!r}", param="after")
        below = seen.step
    found = checkpoint_queries.list_kept_checkpoints(session, job.id, below_step=below, limit=limit + 1)
    return page([checkpoint_object(job, checkpoint) for checkpoint in found[:limit]], len(found) > limit)
