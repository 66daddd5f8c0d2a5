"""The watch every live worker keeps: attempts whose heartbeat stopped are interrupted (and
restarted or failed, as db/lifecycle.py decides), queued runs whose broker message never went
out, or was lost by the broker, are sent again, and dataset files no row owns are removed. The
lifecycle's conditional interrupt lets exactly one worker act on each.

Heartbeat ages are measured by the database's clock. After an outage of the database nobody
could beat, so no attempt is judged lost until a whole heartbeat timeout has passed since the
database answered again."""

import logging
import threading
import time
from datetime import timedelta

from db.clock import database_now
from db.engine import session_scope
from db.lifecycle import interrupt_and_restart
from db.outbox import resend_lost, send_unsent
from db.retry import is_transient
from db.runs import heartbeat_cutoff, stale_run_ids
from db.sweep_control import advance_now, running_sweeps
from traindock.dataset_files import sweep_dataset_files
from traindock.settings import get_settings

log = logging.getLogger(__name__)


def recover_lost_runs(judge_heartbeats: bool = True) -> None:
    settings = get_settings()
    with session_scope() as session:
        cutoff = heartbeat_cutoff(session, settings.heartbeat_timeout_s)
        now = database_now(session)
        candidates = stale_run_ids(session, cutoff) if judge_heartbeats else []
    error = {"code": "worker_lost",
             "message": f"no heartbeat for over {settings.heartbeat_timeout_s:g} s: the worker was lost"}
    for run_id in candidates:
        with session_scope() as session:
            interrupt_and_restart(session, run_id, error, heartbeat_before=cutoff)
    grace = timedelta(seconds=settings.redispatch_after_s)
    send_unsent(now - grace)
    try:
        resend_lost(now - grace)
    except Exception:  # the broker is down: the next round looks again
        log.warning("could not look for lost broker messages", exc_info=True)
    sweep_dataset_files(settings)
    for sweep_id in running_sweeps():
        advance_now(sweep_id)  # what a lost trigger (a crash between commit and call) left undone


def start_recovery_thread() -> threading.Thread:
    settings = get_settings()

    def loop() -> None:
        last_unreachable = None  # when this loop last found the database unreachable
        while True:
            try:
                judge = last_unreachable is None or time.monotonic() - last_unreachable > settings.heartbeat_timeout_s
                recover_lost_runs(judge_heartbeats=judge)
                if judge:
                    last_unreachable = None
            except Exception as exc:  # keep watching; the next round retries
                if is_transient(exc):
                    log.warning("database unreachable; looking again in %g s", settings.recovery_interval_s)
                    last_unreachable = time.monotonic()
                else:
                    log.exception("looking for lost attempts failed")
            threading.Event().wait(settings.recovery_interval_s)

    thread = threading.Thread(target=loop, name="traindock-recovery", daemon=True)
    thread.start()
    return thread
