"""Graceful drain: a worker asked to stop (SIGTERM to it, or to its whole process group as
systemd and Kubernetes send it) has its training processes checkpoint the current step, hands
their jobs back to the queue and only then exits, within TRAINDOCK_DRAIN_TIMEOUT_S.

Celery resets SIGTERM to its default in pool processes, where the supervisor runs: a SIGTERM to
the process group would kill the supervisor, and the parent-death signal would then kill the
training process before it could save. So a pool process running a job takes SIGTERM as "drain", and the main
process passes its own warm shutdown on to its pool processes the same way. A cold shutdown stays
cold: the pool processes are killed, and their training processes with them."""

import os
import signal
import threading
from pathlib import Path

DRAINING = threading.Event()


def drain_on_sigterm() -> None:
    """In a pool process, as a task begins (billiard installs its own SIGTERM handler after
    Celery's worker_process_init): SIGTERM sets DRAINING; the supervisor's watch does the rest."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: DRAINING.set())


def pass_on_shutdown(how: str) -> None:
    """In the main process, when a shutdown begins."""
    for pid in child_pids(os.getpid()):
        try:
            os.kill(pid, signal.SIGTERM if how == "Warm" else signal.SIGKILL)
        except ProcessLookupError:
            pass


def child_pids(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids
