"""Run (attempt) queries: heartbeats, pids, errors and lookups. The run row is the truth about a
training attempt, not Celery's task state; its status changes are db/lifecycle.py's."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.clock import database_now
from db.models import Run
from db.status import RunStatus


def get_run(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


def set_pid(session: Session, run_id: int, pid: int) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(pid=pid))


def beat(session: Session, run_id: int) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=database_now(session)))


def set_run_error(session: Session, run_id: int, error: dict[str, Any]) -> None:
    """Written by the training process before it exits with an error the supervisor reports."""
    session.execute(update(Run).where(Run.id == run_id).values(error=error))


def latest_run(session: Session, job_id: int) -> Run | None:
    return session.scalar(select(Run).where(Run.job_id == job_id).order_by(Run.attempt.desc()).limit(1))


def count_runs(session: Session, job_id: int, reason: str) -> int:
    return session.scalar(select(func.count()).where(Run.job_id == job_id, Run.reason == reason))


def heartbeat_cutoff(session: Session, timeout_s: float) -> datetime:
    """Heartbeats older than this are stale, by the database's clock (the one they are written with)."""
    return database_now(session) - timedelta(seconds=timeout_s)


def stale_run_ids(session: Session, heartbeat_before: datetime) -> list[int]:
    return list(session.scalars(
        select(Run.id).where(Run.status == RunStatus.RUNNING, Run.heartbeat_at < heartbeat_before)
    ))
