"""Hands a committed run to the broker. A failure to send fails the job visibly instead of
leaving it queued with no message; the API, the supervisor and the recovery all send this way."""

import logging

from celery import Celery

from db.engine import session_scope
from db.events import add_event
from db.runs import finish_run, get_run
from db.status import RunStatus
from traindock.broker import send_run

log = logging.getLogger(__name__)


def dispatch_run(app: Celery, run_id: int, queue: str) -> bool:
    try:
        send_run(app, run_id, queue)
    except Exception as exc:  # any broker or connection error
        log.exception("could not send run %s to queue %s", run_id, queue)
        with session_scope() as session:
            finish_run(session, run_id, RunStatus.FAILED, "failed: could not hand the job to the broker",
                       error={"code": "broker_unavailable", "message": f"{type(exc).__name__}: {exc}"},
                       expected=RunStatus.QUEUED)
        return False
    with session_scope() as session:
        run = get_run(session, run_id)
        add_event(session, run.job_id, "queued", f"attempt {run.attempt} sent to queue '{queue}'",
                  run_id=run_id, data={"attempt": run.attempt})
    return True
