"""Checkpoint rows: one per saved `checkpoint-<step>` folder; rotated-out folders stay listed as
deleted, never as usable."""

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.events import add_event
from db.models import Checkpoint, utcnow
from db.upsert import upsert
from traindock.storage import get_store


def record_checkpoint(
    session: Session, job_id: int, run_id: int, step: int, path: str, metrics: dict[str, Any] | None
) -> None:
    upsert(
        session, Checkpoint,
        [{"job_id": job_id, "run_id": run_id, "step": step, "path": path, "metrics": metrics,
          "is_best": False, "deleted": False, "created_at": utcnow()}],
        keys=["job_id", "step"], update=["run_id", "path", "metrics", "deleted", "created_at"],
    )
    add_event(session, job_id, "checkpoint.saved", f"checkpoint of step {step} saved", run_id=run_id,
              data={"step": step, "path": path, "metrics": metrics})


def mark_deleted_except(
    session: Session, job_id: int, existing_steps: set[int], among: set[int] | None = None
) -> list[int]:
    """Mark every usable checkpoint whose folder is gone as deleted; returns those steps. `among`:
    only these steps are looked at (those a worker that keeps no others on disk has seen)."""
    gone = [
        step for step in session.scalars(
            select(Checkpoint.step).where(Checkpoint.job_id == job_id, Checkpoint.deleted.is_(False))
        )
        if step not in existing_steps and (among is None or step in among)
    ]
    if gone:
        session.execute(
            update(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step.in_(gone))
            .values(deleted=True)
        )
    return gone


def mark_deleted_after(session: Session, job_id: int, step: int) -> None:
    """A resume from `step` replaces the later timeline: its checkpoints, wherever they are kept
    (a worker's disk or the object store), are no longer usable."""
    session.execute(update(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step > step)
                    .values(deleted=True))


def mark_best(session: Session, job_id: int, step: int | None) -> None:
    session.execute(update(Checkpoint).where(Checkpoint.job_id == job_id).values(is_best=False))
    if step is not None:
        session.execute(
            update(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step == step).values(is_best=True)
        )


def list_checkpoints(session: Session, job_id: int) -> list[Checkpoint]:
    return list(session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)))


def usable_checkpoint(session: Session, job_id: int, step: int | None = None) -> Checkpoint | None:
    """The checkpoint at `step` (default: the latest) that is not deleted and whose folder is
    still complete. With an object store the row is enough: a checkpoint is recorded only once its
    upload is complete (worker/checkpoint_upload.py), and this runs under the job's row lock, where
    no request to the store may wait. With the local store, the folder itself is looked at."""
    store = get_store()
    query = select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.deleted.is_(False))
    if step is not None:
        query = query.where(Checkpoint.step == step)
    for checkpoint in session.scalars(query.order_by(Checkpoint.step.desc())):
        # trainer_state.json is written last: with it the folder is whole
        if store.copies or store.exists(f"{checkpoint.path}/trainer_state.json"):
            return checkpoint
    return None


def get_checkpoint(session: Session, checkpoint_id: int) -> Checkpoint | None:
    return session.get(Checkpoint, checkpoint_id)


def list_kept_checkpoints(session: Session, job_id: int, *, below_step: int | None, limit: int) -> list[Checkpoint]:
    """The checkpoints not rotated out or set aside, latest step first."""
    query = select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.deleted.is_(False))
    if below_step is not None:
        query = query.where(Checkpoint.step < below_step)
    return list(session.scalars(query.order_by(Checkpoint.step.desc()).limit(limit)))
