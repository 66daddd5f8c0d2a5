from fastapi import APIRouter

from api.auth import CurrentTenant
from api.errors import AUTHENTICATED
from jobspec import job_spec_json_schema

router = APIRouter(tags=["schema"], responses=AUTHENTICATED)


@router.get("/schema/job-spec")
def job_spec_schema(_tenant: CurrentTenant) -> dict:
    """The JSON Schema of a job spec."""
    return job_spec_json_schema()
