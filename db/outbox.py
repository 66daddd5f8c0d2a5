"""Broker messages of a unit of work, sent only after it commits (a transactional outbox): runs
to start (webhook deliveries: db/delivery_outbox.py).

A transition that queues a run calls `send_after_commit`: the message goes out once the session
commits, and never if it rolls back, so no request handler commits by hand to order a send. The
run row is the durable record: `dispatched_at` stays empty until the broker took the message, so a
crash between commit and send, or a broker that was down, leaves the run queued and
`send_unsent` (the recovery loop) sends it later. The worker's claim makes a second delivery
harmless."""

import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.clock import database_now
from db.engine import session_scope
from db.events import add_event
from db.hooks import after_commit
from db.models import Job, Run
from db.status import RunStatus
from traindock.broker import producer, queued_task_ids, run_task_id, send_run

log = logging.getLogger(__name__)


def send_after_commit(session: Session, run_id: int, queue: str) -> None:
    after_commit(session, lambda: dispatch(run_id, queue))


def revoke_after_commit(session: Session, run_id: int) -> None:
    """Best effort: saves a delivery; the claim refuses a run that is no longer queued anyway."""
    after_commit(session, lambda: _revoke(run_id))


def dispatch(run_id: int, queue: str, *, first_try: bool = True) -> bool:
    """Send the run and record that it went; if the broker refuses, the run stays queued (an event
    says so on the first try) and is sent again later."""
    try:
        send_run(producer(), run_id, queue)
    except Exception as exc:  # any broker or connection error
        log.warning("could not send run %s to queue %s: %r", run_id, queue, exc)
        if first_try:
            with session_scope() as session:
                run = session.get(Run, run_id)
                add_event(session, run.job_id, "run.handoff_pending",
                          f"attempt {run.attempt} could not be handed to the broker yet "
                          f"({type(exc).__name__}); it stays queued and is sent when the broker answers",
                          run_id=run_id, data={"attempt": run.attempt, "error": f"{type(exc).__name__}: {exc}"})
        return False
    with session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(dispatched_at=database_now(session)))
    return True


def unsent_runs(session: Session, created_before: datetime) -> list[tuple[int, str]]:
    """(run id, queue) of the queued runs whose message never reached the broker."""
    rows = session.execute(
        select(Run.id, Job.queue).join(Job, Job.id == Run.job_id)
        .where(Run.status == RunStatus.QUEUED, Run.dispatched_at.is_(None), Run.created_at < created_before)
        .order_by(Run.id)
    )
    return [(run_id, queue) for run_id, queue in rows]


def send_unsent(created_before: datetime) -> list[int]:
    """Send again what was committed but never sent; returns the runs sent now."""
    with session_scope() as session:
        pending = unsent_runs(session, created_before)
    return [run_id for run_id, queue in pending if dispatch(run_id, queue, first_try=False)]


def sent_runs(session: Session, dispatched_before: datetime) -> dict[str, list[int]]:
    """queue -> ids of the queued runs whose message went out before `dispatched_before`."""
    rows = session.execute(
        select(Run.id, Job.queue).join(Job, Job.id == Run.job_id)
        .where(Run.status == RunStatus.QUEUED, Run.dispatched_at < dispatched_before).order_by(Run.id)
    )
    by_queue: dict[str, list[int]] = {}
    for run_id, queue in rows:
        by_queue.setdefault(queue, []).append(run_id)
    return by_queue


def resend_lost(dispatched_before: datetime) -> list[int]:
    """Send again the queued runs whose message the broker no longer holds (Redis restarted
    without persistence). A run sent less than the grace ago may be in a worker's hands on its way
    to the claim, so only older ones are looked at; each is sent at most once per grace, and only
    while its message is missing, so duplicates cannot pile up (and the claim ignores them)."""
    with session_scope() as session:
        by_queue = sent_runs(session, dispatched_before)
    resent = []
    for queue, run_ids in by_queue.items():
        waiting = queued_task_ids(producer(), queue)
        if waiting is None:
            continue
        resent += [run_id for run_id in run_ids
                   if run_task_id(run_id) not in waiting and dispatch(run_id, queue, first_try=False)]
    return resent


def _revoke(run_id: int) -> None:
    try:
        producer().control.revoke(run_task_id(run_id))
    except Exception:
        log.warning("could not revoke run %s", run_id, exc_info=True)
