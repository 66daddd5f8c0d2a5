"""The worker registry: what each queue can run now. Admin tenants (TRAINDOCK_ADMIN_TENANTS)
also see every worker, its host and the jobs it runs; other tenants see only each queue's
capacity, nothing of other tenants' work."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import CurrentTenant
from api.deps import SessionDep, SettingsDep
from api.errors import AUTHENTICATED
from db.workers import SeenWorker, running_jobs, seen_workers

router = APIRouter(prefix="/workers", tags=["workers"], responses=AUTHENTICATED)


class GpuCount(BaseModel):
    name: str
    memory_bytes: int
    bf16: bool
    count: int = Field(description="GPUs of this kind over the queue's live workers.")


class QueueCapacity(BaseModel):
    queue: str
    live_workers: int
    gpus: list[GpuCount]
    largest_gpu_set: int = Field(description="The most GPUs one live worker has: the largest resources.gpus "
                                 "a job of this queue can have.")
    integrations: list[str] = Field(description="report_to names at least one live worker can serve.")


class WorkerOut(BaseModel):
    name: str
    host: str
    pid: int
    queues: list[str]
    gpus: list[dict[str, Any]] = Field(description="index, name, memory_bytes, compute_capability, bf16; [] on CPU.")
    gpu_ids: list[str] = Field(description="Its GPU set (traindock worker --gpus); jobs get the first resources.gpus.")
    integrations: list[str]
    versions: dict[str, str | None]
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float = Field(description="Seconds since the last heartbeat, by the database's clock.")
    live: bool = Field(description="Not stopped, and beaten within TRAINDOCK_HEARTBEAT_TIMEOUT_S.")
    stopped_at: datetime | None
    running_job_ids: list[int]


class WorkersOut(BaseModel):
    queues: list[QueueCapacity] = Field(description="Every queue a live worker consumes.")
    workers: list[WorkerOut] | None = Field(
        description="Every registered worker, live or not (admin tenants only; null for others).")


def queue_capacity(live: list[SeenWorker]) -> list[QueueCapacity]:
    queues = sorted({queue for seen in live for queue in seen.worker.queues})
    capacity = []
    for queue in queues:
        workers = [seen.worker for seen in live if queue in seen.worker.queues]
        gpus: dict[tuple, int] = {}
        for gpu in (gpu for worker in workers for gpu in worker.gpus):
            kind = (gpu["name"], gpu["memory_bytes"], gpu["bf16"])
            gpus[kind] = gpus.get(kind, 0) + 1
        capacity.append(QueueCapacity(
            queue=queue, live_workers=len(workers), largest_gpu_set=max(len(worker.gpu_ids) for worker in workers),
            gpus=[GpuCount(name=name, memory_bytes=memory, bf16=bf16, count=count)
                  for (name, memory, bf16), count in sorted(gpus.items())],
            integrations=sorted({name for worker in workers for name in worker.integrations}),
        ))
    return capacity


@router.get("", response_model=WorkersOut)
def list_workers(tenant: CurrentTenant, session: SessionDep, settings: SettingsDep):
    """Each queue's live capacity; for admin tenants also every worker with its running jobs."""
    seen = seen_workers(session, settings.heartbeat_timeout_s)
    capacity = queue_capacity([entry for entry in seen if entry.live])
    if tenant.name not in settings.admin_tenants:
        return WorkersOut(queues=capacity, workers=None)
    jobs = running_jobs(session, [entry.worker.name for entry in seen])
    workers = [
        WorkerOut(**{field: getattr(entry.worker, field) for field in (
            "name", "host", "pid", "queues", "gpus", "gpu_ids", "integrations", "versions", "started_at", "heartbeat_at",
            "stopped_at")}, heartbeat_age_s=entry.heartbeat_age_s, live=entry.live,
            running_job_ids=jobs[entry.worker.name])
        for entry in seen
    ]
    return WorkersOut(queues=capacity, workers=workers)
