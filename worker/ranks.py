"""A job on several GPUs: `resources.gpus` N > 1 runs N training processes (ranks) under torchrun
instead of one. This module is the contract between the ranks and their supervisor, and imports
nothing heavy (the supervisor imports it).

- Each rank dies with torchrun (its own parent-death signal: torchrun starts ranks in sessions of
  their own, out of reach of a signal to its process group), writes its output to
  `attempt-<n>.rank-<r>.log` (the launcher's own output stays in `attempt-<n>.log`) and, as it
  ends, its exit code to `attempt-<n>.rank-<r>.exit`.
- torchrun exits 1 whichever way a rank failed, so the supervisor reads the ranks' exit codes
  to say how the attempt ended, as one training process's exit code would.
- A stop (cancel, pause, worker shutdown) is SIGUSR1 to every rank; the ranks agree on the step
  to stop at (worker/callback.py). SIGTERM keeps its default in ranks: it is how torchrun stops
  the others when one fails."""

import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from traindock.lifetime import die_with_parent
from traindock.paths import rank_exit_path, rank_log_path
from worker.drain import child_pids
from worker.errors import EXIT_DATABASE_UNAVAILABLE, EXIT_FAILED, EXIT_STOPPED, EXIT_SUCCEEDED

# A rank whose collective failed because another rank was gone: a consequence, never the cause.
EXIT_PEER_LOST = 5
# torchrun's report of the first failure: "exitcode  : -9 (pid: 123)".
LAUNCHER_EXIT_CODE = re.compile(r"exitcode\s*:\s*(-?\d+)")


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def rank() -> int:
    """This process's rank (0 for the one training process of a one-GPU job)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many ranks torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def training_command(run_id: int, gpus: int, log_path: Path) -> list[str]:
    train = ["-m", "worker.train", "--run-id", str(run_id)]
    if gpus == 1:
        return [sys.executable, *train]
    # --standalone: a rendezvous on a free local port, so jobs on one machine never meet.
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}",
            *train, "--attempt-log", str(log_path)]


# ---- In the rank ------------------------------------------------------------------------------

def become_rank(attempt_log: Path) -> None:
    """First thing in a rank: die with torchrun, and write to this rank's own log."""
    die_with_parent(signal.SIGKILL)()
    if os.getppid() == 1:  # torchrun died before the line above
        os._exit(1)
    log = os.open(rank_log_path(attempt_log, rank()), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (1, 2):
        os.dup2(log, stream)
    os.close(log)


def record_exit(attempt_log: Path, code: int) -> None:
    rank_exit_path(attempt_log, rank()).write_text(str(code))


def is_peer_lost(exc: BaseException) -> bool:
    """A collective that failed because another rank died (gloo: the connection closed)."""
    while exc is not None:
        names = {cls.__name__ for cls in type(exc).__mro__}
        if names & {"DistBackendError", "DistNetworkError"} or any(
            text in str(exc) for text in ("Connection closed by peer", "Connection reset by peer")
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# ---- In the supervisor ------------------------------------------------------------------------

@dataclass(frozen=True)
class RanksEnded:
    code: int  # as one training process would have exited
    log_path: Path  # the log that says why: the failing rank's
    crash: str | None = None  # a rank died without an exit code: how


def how_ranks_ended(launcher_code: int, gpus: int, attempt_log: Path) -> RanksEnded:
    if launcher_code == EXIT_SUCCEEDED or launcher_code < 0:  # all succeeded, or torchrun itself was killed
        return RanksEnded(launcher_code, attempt_log)
    codes = {r: _exit_code(rank_exit_path(attempt_log, r)) for r in range(gpus)}
    failed = [r for r, code in codes.items() if code == EXIT_FAILED]
    if failed:  # the rank that failed wrote its error (out_of_memory...); the others followed it down
        return RanksEnded(EXIT_FAILED, rank_log_path(attempt_log, failed[0]))
    if any(code == EXIT_DATABASE_UNAVAILABLE for code in codes.values()):
        return RanksEnded(EXIT_DATABASE_UNAVAILABLE, attempt_log)
    if codes and all(code == EXIT_STOPPED for code in codes.values()):
        return RanksEnded(EXIT_STOPPED, rank_log_path(attempt_log, 0))
    lost = [r for r, code in codes.items() if code is None] or list(codes)
    signal_code = _launcher_reported_signal(attempt_log)
    how = f"killed by {signal.Signals(-signal_code).name}" if signal_code else "ended without an exit code"
    return RanksEnded(signal_code or -signal.SIGKILL, rank_log_path(attempt_log, lost[0]),
                      crash=f"training process rank {lost[0]} of {gpus} was {how}; torchrun stopped the others")


def ask_ranks_to_stop(launcher_pid: int) -> None:
    """SIGUSR1 to each rank that already catches it (one still starting would die of it, and gets
    it at the next call: the supervisor repeats it until the ranks end)."""
    for pid in child_pids(launcher_pid):
        if catches(pid, signal.SIGUSR1):
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass


def catches(pid: int, signum: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
    return bool(int(caught, 16) >> (signum - 1) & 1)


def _exit_code(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _launcher_reported_signal(attempt_log: Path) -> int | None:
    try:
        text = attempt_log.read_text(errors="replace")[-20000:]
    except OSError:
        return None
    for match in LAUNCHER_EXIT_CODE.finditer(text):
        code = int(match.group(1))
        if code < 0 and -code in signal.Signals._value2member_map_:
            return code
    return None
