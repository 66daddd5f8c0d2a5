"""Sample generations of a job (the spec's `evaluation` section): what the model generated for each
sample prompt at each evaluation step and at the end of training."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from api.auth import CurrentTenant
from api.deps import SessionDep
from api.errors import AUTHENTICATED, NOT_FOUND, not_found
from api.schemas import JobId, ORMModel
from db import jobs as job_queries
from db.samples import list_samples
from jobspec.model import MAX_STEP

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTHENTICATED)


class SampleOut(ORMModel):
    step: int = Field(description="The evaluation step (or the last step, for the end-of-training round).")
    prompt_index: int = Field(description="Position of the prompt: the sample prompts first, then the "
                              "validation rows.")
    source: Literal["prompt", "validation"]
    prompt: Any = Field(description="The prompt: a text or a list of chat messages (a validation row's "
                        "instruction and input, or its conversation up to the last answer).")
    output: str = Field(description="What the model generated (greedy).")
    reference: str | None = Field(description="The validation row's answer; null for a sample prompt.")
    created_at: datetime = Field(serialization_alias="time")


@router.get("/{job_id}/samples", response_model=list[SampleOut], responses=NOT_FOUND)
def get_samples(
    job_id: JobId, tenant: CurrentTenant, session: SessionDep,
    step: Annotated[int | None, Query(ge=0, le=MAX_STEP, description="Only this step's samples.")] = None,
    prompt_index: Annotated[int | None, Query(ge=0, le=1000, description="Only this prompt's samples, "
                                              "at every step.")] = None,
):
    """Ordered by step, then prompt index."""
    if not job_queries.owns_job(session, job_id, tenant.id):
        raise not_found("job", job_id)
    return list_samples(session, job_id, step=step, prompt_index=prompt_index)
