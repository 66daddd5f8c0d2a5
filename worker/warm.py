"""A spare training process, started before its job: it imports torch, transformers and peft (most
of a job's fixed start-up) while the worker waits, then takes the next one-process job whose
environment it was started with. Each process still trains one job and exits, so a job's GPU
memory is returned as before; the next spare starts once the job is over.

Supervisor side (a Celery pool process): `start_spare(env)`, `take_spare(env, run_id, log_path)`.
Training side (`python -m worker.train --warm`): `wait_for_run()`."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from traindock.lifetime import die_with_parent

_spare: tuple[subprocess.Popen, dict[str, str]] | None = None

# "Checkpoint and stop" (worker/train.py): SIGUSR1 (cancel, pause), SIGTERM (worker shutdown).
STOP_SIGNALS = frozenset({signal.SIGUSR1, signal.SIGTERM})


def hold_stop_signals(preexec_fn):
    """A preexec_fn that also starts the training process with the stop signals blocked: one sent
    before its handlers are in (Python's start-up, a spare's first lines) stays pending instead of
    killing it, and is delivered when worker/train.py installs the handlers and unblocks them."""

    def preexec() -> None:
        preexec_fn()
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    return preexec


def start_spare(env: dict[str, str]) -> None:
    global _spare
    if _spare is not None and _spare[0].poll() is None:
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.train", "--warm"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=env, preexec_fn=hold_stop_signals(die_with_parent(signal.SIGKILL)),
        process_group=0)
    _spare = (process, env)


def take_spare(env: dict[str, str], run_id: int, log_path: Path) -> subprocess.Popen | None:
    """The spare, now training `run_id` with its output in `log_path`; None when there is none
    alive that was started with `env` (a job's GPUs or secrets differ): the caller starts one."""
    global _spare
    spare, _spare = _spare, None
    if spare is None:
        return None
    process, spare_env = spare
    if process.poll() is None and spare_env == env:
        try:
            process.stdin.write(f"{run_id} {log_path}\n".encode())
            process.stdin.close()
            return process
        except OSError:  # it died meanwhile
            pass
    _discard(process)
    return None


def _discard(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def wait_for_run() -> tuple[int, Path] | None:
    """In the spare: block until the supervisor hands over a run; None when it closes the pipe
    without one. From here on the process writes to the attempt's log."""
    line = sys.stdin.readline().strip()
    if not line:
        return None
    run_id, log_path = line.split(" ", 1)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return int(run_id), Path(log_path)
