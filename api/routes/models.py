"""Models: the base models in the server's model roots and the tenant's fine-tuned models."""

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import CurrentTenant
from api.deps import SessionDep, SettingsDep
from api.errors import AUTHENTICATED
from api.model_catalog import base_models
from db.jobs import list_succeeded_jobs

router = APIRouter(prefix="/models", tags=["models"], responses=AUTHENTICATED)


class BaseModelOut(BaseModel):
    name: str = Field(description="What `base_model` names it by: its folder in a model root.")
    architecture: str | None = Field(description="config.json's architectures[0] (or model_type).")
    parameters: int | None = Field(description="From the safetensors headers, else estimated from config.json.")


class FineTunedModelOut(BaseModel):
    job_id: int = Field(description="The succeeded job; a new job starts from it with init_from_job_id.")
    name: str | None
    base_model: str
    method: str
    finished_at: datetime | None
    download: str = Field(description="GET this for a tar of the final model.")


class ModelsOut(BaseModel):
    base: list[BaseModelOut]
    fine_tuned: list[FineTunedModelOut]


@router.get("", response_model=ModelsOut)
def list_models(tenant: CurrentTenant, session: SessionDep, settings: SettingsDep):
    base = [BaseModelOut(name=m.name, architecture=m.architecture, parameters=m.parameters)
            for m in base_models(settings.effective_model_roots)]
    tuned = [FineTunedModelOut(job_id=job.id, name=job.name, base_model=job.spec["base_model"],
                               method=job.spec["method"], finished_at=job.finished_at,
                               download=f"/jobs/{job.id}/artifacts/final")
             for job in list_succeeded_jobs(session, tenant.id)]
    return ModelsOut(base=base, fine_tuned=tuned)
