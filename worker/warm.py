"""A spare training process, started before its job: it imports torch, transformers and peft (most
of a job's fixed start-up) while the worker waits, then takes the next one-process job whose
environment it was started with. Each process still trains one job and exits, so a job's GPU
memory is returned as before; the next spare starts once the job is over.

Until it is handed a run, a spare writes to a file of its own
(`<logs>/spares/spare-<host>-<pool pid>.log`): at the hand-over it copies that into the attempt's
log and removes it; a spare that ends before it took its run (an import failed) leaves it, and the
supervisor puts it into the attempt's log.

Supervisor side (a Celery pool process): `start_spare(env, output_dir)`, `take_spare(env, run_id,
log_path)`, `keep_output(process, log_path)`. Training side (`python -m worker.train --warm`):
`wait_for_run()`."""

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from traindock.lifetime import die_with_parent

log = logging.getLogger(__name__)
_spare: tuple[subprocess.Popen, dict[str, str]] | None = None
OUTPUT_ENV = "TRAINDOCK_SPARE_OUTPUT"  # the spare's own output file, until it is handed a run

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


def start_spare(env: dict[str, str], output_dir: Path) -> None:
    global _spare
    if _spare is not None:
        if _spare[0].poll() is None:
            return
        _forget(_spare[0])  # it died idle
    output_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(output_dir)
    output = output_dir / f"spare-{socket.gethostname()}-{os.getpid()}.log"  # one per pool process at a time
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.train", "--warm"], stdin=subprocess.PIPE, stdout=out,
            stderr=subprocess.STDOUT, env={**env, OUTPUT_ENV: str(output)},
            preexec_fn=hold_stop_signals(die_with_parent(signal.SIGKILL)), process_group=0)
    process.spare_output = output
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
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    _forget(process)


def _remove_stale(output_dir: Path) -> None:
    """The files of this machine's spares that died with their pool process (a worker's shutdown)."""
    prefix = f"spare-{socket.gethostname()}-"
    for path in output_dir.glob(f"{prefix}*.log"):
        pid = path.name[len(prefix):-len(".log")]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)


def _forget(process: subprocess.Popen) -> None:
    """A spare that took no run: its output goes to the worker's log if it died of itself."""
    output = _take_output(process)
    if process.returncode not in (0, -signal.SIGKILL) and output:
        log.warning("the spare training process %s had ended (exit code %s) before it was handed a run:\n%s",
                    process.pid, process.returncode, output[-4000:])


def _take_output(process: subprocess.Popen) -> str:
    """What the spare wrote before it was handed a run, if it did not take the run (it removes its
    file when it does), and the file removed."""
    path = getattr(process, "spare_output", None)
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
        path.unlink()
    except FileNotFoundError:
        return ""
    return text


def keep_output(process: subprocess.Popen, log_path: Path) -> None:
    """After the training process ended: a spare that ended before it took its run (an import
    failed) wrote why only to its own file; that goes into the attempt's log."""
    output = _take_output(process)
    if output:
        with log_path.open("a") as attempt_log:
            attempt_log.write(f"(the spare training process {process.pid} ended before it took this run; "
                              f"its output:)\n{output}")


def wait_for_run() -> tuple[int, Path] | None:
    """In the spare: block until the supervisor hands over a run; None when it closes the pipe
    without one. From here on the process writes to the attempt's log."""
    line = sys.stdin.readline().strip()
    if not line:
        return None
    run_id, log_path = line.split(" ", 1)
    attempt_log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _hand_own_output_to(attempt_log)
    os.dup2(attempt_log, 1)
    os.dup2(attempt_log, 2)
    os.close(attempt_log)
    return int(run_id), Path(log_path)


def _hand_own_output_to(attempt_log: int) -> None:
    """The spare's output so far (its imports' warnings) opens the attempt's log; its file goes."""
    sys.stdout.flush()
    sys.stderr.flush()
    own = os.environ.pop(OUTPUT_ENV, None)
    if own is None:
        return
    try:
        earlier = Path(own).read_bytes()
        Path(own).unlink()
    except OSError:
        return
    with os.fdopen(os.dup(attempt_log), "ab") as out:
        out.write(earlier)
