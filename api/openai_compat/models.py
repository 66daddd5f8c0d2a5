"""/v1/models: the base models in the server's model roots and the tenant's fine-tuned models
(`fine_tuned_model` of its succeeded jobs), which new jobs can start from."""

import re

from fastapi import APIRouter

from api.auth import CurrentTenant
from api.deps import SessionDep, SettingsDep
from api.job_removal import delete_job
from api.model_catalog import base_models
from api.openai_compat import ids
from api.openai_compat.errors import OpenAIError
from api.openai_compat.objects import checkpoint_model_id, fine_tuned_model_id, model_object, page, unix
from db.checkpoints import usable_checkpoint
from db import jobs as queries
from db.models import Job

router = APIRouter(prefix="/models", tags=["models"])
BASE_OWNER = "traindock"
CHECKPOINT_MODEL = re.compile(r"ft:.+:(?P<job>ftjob-\d{1,19}):ckpt-step-(?P<step>\d{1,10})")


def fine_tuned_job(session, tenant, model: str, *, param: str = "model") -> Job:
    """The succeeded job whose fine_tuned_model is `model` (ft:<base>:<suffix>:ftjob-<id>)."""
    number = ids.decode(ids.JOB, model.rsplit(":", 1)[-1]) if model.startswith("ft:") else None
    job = queries.get_job(session, number, tenant.id) if number else None
    if job is None or fine_tuned_model_id(job) != model:
        raise OpenAIError(404, f"The model '{model}' does not exist", param=param, code="model_not_found")
    return job


def checkpoint_source(session, tenant, model: str) -> tuple[Job, int] | None:
    """(job, step) of a `fine_tuned_model_checkpoint` (ft:<base>:<suffix>:ftjob-<id>:ckpt-step-<step>);
    None when `model` is not of that form; 404 when it names no checkpoint of the tenant's."""
    match = CHECKPOINT_MODEL.fullmatch(model)
    if match is None:
        return None
    number = ids.decode(ids.JOB, match.group("job"))
    job = queries.get_job(session, number, tenant.id) if number else None
    step = int(match.group("step"))
    if job is None or checkpoint_model_id(job, step) != model or usable_checkpoint(session, job.id, step) is None:
        raise OpenAIError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
    return job, step


def _fine_tuned(job: Job) -> dict:
    return model_object(fine_tuned_model_id(job), unix(job.finished_at), f"tenant-{job.tenant_id}")


def _base(info) -> dict:
    return {**model_object(info.name, info.created, BASE_OWNER),
            "architecture": info.architecture, "parameters": info.parameters}


@router.get("")
def list_models(tenant: CurrentTenant, session: SessionDep, settings: SettingsDep):
    models = [_base(info) for info in base_models(settings.effective_model_roots)]
    models += [_fine_tuned(job) for job in queries.list_succeeded_jobs(session, tenant.id)]
    return page(models, False)


@router.get("/{model:path}")
def retrieve_model(model: str, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep):
    if model.startswith("ft:"):
        return _fine_tuned(fine_tuned_job(session, tenant, model))
    for info in base_models(settings.effective_model_roots):
        if info.name == model:
            return _base(info)
    raise OpenAIError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")


@router.delete("/{model:path}")
def delete_model(model: str, tenant: CurrentTenant, session: SessionDep, settings: SettingsDep):
    """A fine-tuned model goes with its job: rows, outputs and logs (as DELETE /jobs/{id})."""
    if not model.startswith("ft:"):
        retrieve_model(model, tenant, session, settings)  # 404 when it is no model at all
        raise OpenAIError(403, f"'{model}' is a base model of the server; only fine-tuned models can be deleted",
                          param="model", code="model_not_deletable")
    delete_job(session, settings, fine_tuned_job(session, tenant, model))
    return {"id": model, "object": "model", "deleted": True}
