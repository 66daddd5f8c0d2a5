"""Worker registry queries. A worker writes its row at start (register_worker), refreshes its
heartbeat while it runs and marks itself stopped when it shuts down cleanly; readers see only
live workers: not stopped, and beaten within the stale interval by the database's clock (the
one heartbeats are written with)."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.clock import database_now
from db.models import Run, Worker
from db.status import RunStatus


def register_worker(session: Session, facts: dict[str, Any]) -> None:
    """Insert or refresh the row of `facts["name"]` (a restarted worker keeps its name)."""
    now = database_now(session)
    worker = session.scalar(select(Worker).where(Worker.name == facts["name"]))
    if worker is None:
        worker = Worker(name=facts["name"])
        session.add(worker)
    for field in ("host", "pid", "queues", "gpus", "integrations", "versions"):
        setattr(worker, field, facts[field])
    worker.gpu_ids = facts.get("gpu_ids", [])
    worker.inference_url = facts.get("inference_url")
    worker.started_at = worker.heartbeat_at = now
    worker.stopped_at = None
    session.flush()


def beat_worker(session: Session, name: str, pid: int) -> bool:
    """False when the row is gone or belongs to another process of the same name (register again)."""
    updated = session.execute(update(Worker).where(Worker.name == name, Worker.pid == pid,
                                                   Worker.stopped_at.is_(None))
                              .values(heartbeat_at=database_now(session)))
    return updated.rowcount == 1


def mark_worker_stopped(session: Session, name: str, pid: int) -> None:
    session.execute(update(Worker).where(Worker.name == name, Worker.pid == pid)
                    .values(stopped_at=database_now(session)))


@dataclass(frozen=True)
class SeenWorker:
    worker: Worker
    heartbeat_age_s: float  # by the database's clock
    live: bool


def seen_workers(session: Session, stale_after_s: float) -> list[SeenWorker]:
    """Every registered worker, live or not, by name."""
    now = database_now(session)
    seen = []
    for worker in session.scalars(select(Worker).order_by(Worker.name)):
        age = (now - worker.heartbeat_at).total_seconds()
        seen.append(SeenWorker(worker, round(max(age, 0.0), 1), worker.stopped_at is None and age <= stale_after_s))
    return seen


def live_workers(session: Session, stale_after_s: float, queue: str | None = None) -> list[Worker]:
    cutoff = database_now(session) - timedelta(seconds=stale_after_s)
    workers = session.scalars(select(Worker).where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= cutoff)
                              .order_by(Worker.name))
    return [worker for worker in workers if queue is None or queue in worker.queues]


def live_inference_urls(session: Session, stale_after_s: float) -> list[str]:
    """Where the live inference servers (worker/serve.py) answer."""
    return [worker.inference_url for worker in live_workers(session, stale_after_s) if worker.inference_url]


def running_jobs(session: Session, names: list[str]) -> dict[str, list[int]]:
    """name -> ids of the jobs whose attempts those workers are running now."""
    rows = session.execute(select(Run.worker, Run.job_id)
                           .where(Run.status == RunStatus.RUNNING, Run.worker.in_(names)).order_by(Run.job_id))
    found: dict[str, list[int]] = {name: [] for name in names}
    for name, job_id in rows:
        found[name].append(job_id)
    return found
