"""The watch every live worker keeps: attempts whose heartbeat stopped are interrupted (and
restarted or failed, as db/lifecycle.py decides), and queued runs whose broker message never went
out are sent again. The lifecycle's conditional interrupt lets exactly one worker act on each."""

import logging
import threading
from datetime import timedelta

from db.engine import session_scope
from db.lifecycle import interrupt_and_restart
from db.models import utcnow
from db.outbox import send_unsent
from db.runs import stale_run_ids
from traindock.settings import get_settings

log = logging.getLogger(__name__)


def recover_lost_runs() -> None:
    settings = get_settings()
    cutoff = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s)
    with session_scope() as session:
        candidates = stale_run_ids(session, cutoff)
    error = {"code": "worker_lost",
             "message": f"no heartbeat for over {settings.heartbeat_timeout_s:g} s: the worker was lost"}
    for run_id in candidates:
        with session_scope() as session:
            interrupt_and_restart(session, run_id, error, heartbeat_before=cutoff)
    send_unsent(utcnow() - timedelta(seconds=settings.redispatch_after_s))


def start_recovery_thread() -> threading.Thread:
    interval = get_settings().recovery_interval_s

    def loop() -> None:
        while True:
            try:
                recover_lost_runs()
            except Exception:  # keep watching; the next round retries
                log.exception("looking for lost attempts failed")
            threading.Event().wait(interval)

    thread = threading.Thread(target=loop, name="traindock-recovery", daemon=True)
    thread.start()
    return thread
