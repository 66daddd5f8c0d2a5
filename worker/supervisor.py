"""Supervises one run: claims it, starts the training process, beats, relays a cancel, and turns
the process's exit into the run's outcome. Training never happens in the Celery process itself:
a fresh interpreter returns all GPU memory when it exits, and a hard kill of it never takes the
worker down.

The database may blink (a restart, a failover): the watch keeps the training process running and
retries its reads and heartbeats; only an outage longer than TRAINDOCK_DB_RETRY_S stops it, and
the job is then handed back (database_unavailable) without using a restart. A worker shutting
down (worker/drain.py) asks the process to checkpoint and hands the job back.

A job on several GPUs gets torchrun and its ranks instead of the one process (worker/ranks.py),
on the first `resources.gpus` GPUs of the worker's set (worker/placement.py)."""

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from db.checkpoints import usable_checkpoint
from db.engine import session_scope
from db.events import add_event
from db.jobs import get_status, job_gpus
from db.lifecycle import claim_run, finish_run, finish_stopped, interrupt_and_restart
from db.outbox import dispatch
from db.retry import is_transient, retrying
from db.runs import beat, get_run, set_pid
from db.status import STOPPING_JOB_STATES, RunStatus
from db.sweep_control import advance_sweep_of
from traindock.lifetime import die_with_parent
from traindock.paths import attempt_log_path
from traindock.settings import get_settings
from worker.drain import DRAINING, child_pids, drain_on_sigterm
from worker import holds, warm
from worker.errors import EXIT_DATABASE_UNAVAILABLE, EXIT_STOPPED
from worker.log_upload import LogUploads
from worker.placement import NotEnoughGpus, job_gpu_ids, worker_gpu_ids
from worker.ranks import RanksEnded, ask_ranks_to_stop, how_ranks_ended, training_command

POLL_S = 0.05  # how soon the process's exit is seen where it cannot wake the watch (no pidfd)
CHECK_S = 0.5  # how often the run and job are read (a cancel is relayed within about this)
TRACEBACK_LINES = 40
DATABASE_UNAVAILABLE = "database_unavailable"


def supervise(run_id: int, worker_name: str) -> str:
    settings = get_settings()
    drain_on_sigterm()
    if DRAINING.is_set():
        # A worker shutting down may still take a message (often the job it just handed back):
        # it sends the run on, unclaimed, for another worker.
        return retrying(lambda: _pass_on(run_id), settings.db_retry_s, "passing the run on")

    def claim() -> tuple[int, int, int] | None:
        with session_scope() as session:
            run = claim_run(session, run_id, worker_name)
            return None if run is None else (run.job_id, run.attempt, job_gpus(session, run.job_id))

    claimed = retrying(claim, settings.db_retry_s, "claiming the run")
    if claimed is None:
        return "ignored"
    job_id, attempt, gpus = claimed
    holds.hold("claimed")
    try:
        gpu_ids = job_gpu_ids(worker_gpu_ids(settings.gpus), gpus, worker_name)
    except NotEnoughGpus as refused:
        return retrying(lambda: _refuse(run_id, refused), settings.db_retry_s, "refusing the run")
    log_path = attempt_log_path(settings.logs_dir, job_id, attempt)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = training_env(settings, gpu_ids)
    process = warm.take_spare(env, run_id, log_path) if gpus == 1 else None
    if process is None:
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                training_command(run_id, gpus, log_path),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                # Never beside a restarted attempt; in a process group of its own, which a kill ends whole.
                # One training process takes a stop sent before its handlers are in (warm.py); torchrun
                # is left its default signals.
                preexec_fn=warm.hold_stop_signals(die_with_parent(signal.SIGKILL)) if gpus == 1
                else die_with_parent(signal.SIGKILL), process_group=0,
            )

    def started() -> None:
        with session_scope() as session:
            set_pid(session, run_id, process.pid)
            add_event(session, job_id, "run.process_started", f"training process {process.pid} started",
                      run_id=run_id, data={"pid": process.pid, "log": str(log_path), "attempt": attempt})

    try:
        retrying(started, settings.db_retry_s, "recording the process")
        with LogUploads(log_path, settings.storage_log_interval_s):
            watched = _watch(process, gpus, run_id, job_id, settings)
    except BaseException:
        # Never leave a training process without its supervisor (the recovery would start a
        # second one beside it).
        _kill(process, gpus)
        raise
    code = process.returncode
    warm.keep_output(process, log_path)  # a spare that died before it took the run: why
    ended = how_ranks_ended(code, gpus, log_path) if gpus > 1 else RanksEnded(code, log_path)
    outcome = retrying(lambda: _record_outcome(run_id, ended, watched), settings.db_retry_s,
                       "recording how the attempt ended")
    advance_sweep_of(job_id)  # a sweep's trial ended: its next trial, or the sweep's end
    # Only now: importing beside a training job slowed its steps by a third on a 2-core machine.
    prepare_spare(settings)
    return outcome


def training_env(settings, gpu_ids: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    if settings.hub_token is not None:  # secrets reach training only through its environment
        env["HF_TOKEN"] = settings.hub_token.get_secret_value()
    if gpu_ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    return env


def prepare_spare(settings) -> None:
    """Start the training process of this pool process's next one-GPU job ahead of it (worker/warm.py):
    it imports torch and transformers in the meantime, and holds no GPU memory until it trains."""
    if settings.warm_start and not DRAINING.is_set():
        warm.start_spare(training_env(settings, job_gpu_ids(worker_gpu_ids(settings.gpus), 1, "")),
                         settings.logs_dir / "spares")


def _pass_on(run_id: int) -> str:
    with session_scope() as session:
        run = get_run(session, run_id)
        queue = run.job.queue if run is not None and run.status == RunStatus.QUEUED else None
    if queue is not None:
        dispatch(run_id, queue)
    return "passed on"


def _refuse(run_id: int, refused: NotEnoughGpus) -> str:
    with session_scope() as session:
        error = {"code": refused.code, "message": str(refused)}
        finish_run(session, run_id, RunStatus.FAILED, f"failed: {error['message']}", error=error)
        return RunStatus.FAILED


@dataclass
class Watched:
    stop_requested: bool = False
    killed_after_grace: bool = False
    settled_elsewhere: str | None = None  # the run's status when something else ended it
    drain_requested: bool = False  # the worker is shutting down
    killed_after_drain: bool = False
    database_lost: bool = False  # unreachable for longer than db_retry_s


def _watch(process: subprocess.Popen, gpus: int, run_id: int, job_id: int, settings) -> Watched:
    """Wait for the process, beating, relaying a cancel or pause or a worker shutdown, and
    stopping it if its attempt was settled elsewhere (the recovery took it for lost)."""
    watched = Watched()
    last_beat = last_check = time.monotonic()
    stop_requested_at = drain_requested_at = 0.0
    unreachable_since: float | None = None
    with _Exit(process) as exits:
        while True:
            if exits.within(last_check + CHECK_S - time.monotonic()):
                return watched
            now = time.monotonic()
            if DRAINING.is_set() and not watched.drain_requested:
                _ask_to_stop(process, gpus, signal.SIGTERM)  # the training process checkpoints and stops
                watched.drain_requested, drain_requested_at = True, now
                _note_stop_request(job_id, run_id, "the worker is shutting down")
            if watched.drain_requested and now - drain_requested_at > settings.drain_timeout_s:
                _kill(process, gpus)
                watched.killed_after_drain = True
                return watched
            if now - last_check < CHECK_S:
                continue
            last_check = now
            if gpus > 1 and (watched.stop_requested or watched.drain_requested):
                ask_ranks_to_stop(process.pid)  # ranks that were still starting at the first request
            beat_due = now - last_beat >= settings.heartbeat_interval_s
            try:
                with session_scope() as session:
                    if beat_due:
                        beat(session, run_id)
                    job_status = get_status(session, job_id)
                    run_status = get_run(session, run_id).status
                unreachable_since = None
                last_beat = now if beat_due else last_beat
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # Training goes on (it keeps its own reports); only a long outage ends the attempt.
                unreachable_since = unreachable_since or now
                if now - unreachable_since > settings.db_retry_s:
                    _kill(process, gpus)
                    watched.database_lost = True
                    return watched
                continue
            if run_status != RunStatus.RUNNING:
                _kill(process, gpus)
                watched.settled_elsewhere = run_status
                return watched
            if job_status in STOPPING_JOB_STATES and not watched.stop_requested:
                _ask_to_stop(process, gpus, signal.SIGUSR1)
                watched.stop_requested, stop_requested_at = True, now
                _note_stop_request(job_id, run_id, job_status)
            if watched.stop_requested and now - stop_requested_at > settings.cancel_grace_s:
                _kill(process, gpus)
                watched.killed_after_grace = True
                return watched


class _Exit:
    """Waits for the process's exit, woken by it (a pidfd) rather than polling: beside a training
    process that uses every core, each wake-up of this watch takes a little from its steps. A
    worker shutdown (DRAINING, set by a signal handler) is seen at the next check."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.poller = select.poll()  # select.select would refuse a descriptor numbered 1024 or above
        try:
            self.pidfd: int | None = os.pidfd_open(process.pid)
            self.poller.register(self.pidfd, select.POLLIN)
        except (AttributeError, OSError):  # not Linux 5.3+, or the process is already gone
            self.pidfd = None

    def within(self, timeout: float) -> bool:
        timeout = max(timeout, 0.0)
        if self.pidfd is not None:
            self.poller.poll(timeout * 1000)
        if self.process.poll() is not None:
            self.close()
            return True
        if self.pidfd is None:
            try:
                self.process.wait(timeout=min(timeout, POLL_S))
            except subprocess.TimeoutExpired:
                return False
            return True
        return False

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def __enter__(self) -> "_Exit":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _note_stop_request(job_id: int, run_id: int, job_status: str) -> None:
    try:
        with session_scope() as session:
            add_event(session, job_id, "run.stop_requested",
                      f"asked the training process to checkpoint and stop ({job_status})", run_id=run_id)
    except Exception as exc:  # the stop itself was sent; only its note is missing
        if not is_transient(exc):
            raise


def _ask_to_stop(process: subprocess.Popen, gpus: int, signum: int) -> None:
    """One training process takes SIGUSR1 (cancel, pause) or SIGTERM (shutdown) as "checkpoint and
    stop"; every rank of a job on several GPUs takes SIGUSR1 (worker/ranks.py), torchrun none."""
    if gpus == 1:
        process.send_signal(signum)
    else:
        ask_ranks_to_stop(process.pid)


def _kill(process: subprocess.Popen, gpus: int) -> None:
    """The process, and for a job on several GPUs its ranks (each in a session of its own, and
    each dies with torchrun anyway)."""
    for pid in child_pids(process.pid) if gpus > 1 else []:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _record_outcome(run_id: int, ended: RanksEnded, watched: Watched) -> str:
    """Say how the attempt ended; db/lifecycle.py decides the job's state (and queues a restart,
    sent after the commit)."""
    code, log_path = ended.code, ended.log_path
    with session_scope() as session:
        run = get_run(session, run_id)
        if watched.settled_elsewhere:
            add_event(session, run.job_id, "run.process_stopped",
                      f"attempt {run.attempt} was already {watched.settled_elsewhere}; its training "
                      "process was stopped", run_id=run_id, data={"exit_code": code})
            return watched.settled_elsewhere
        if watched.database_lost or code == EXIT_DATABASE_UNAVAILABLE:
            interrupt_and_restart(session, run_id, exit_code=code, error={
                "code": DATABASE_UNAVAILABLE, "message": "the database was unreachable for longer than "
                f"{get_settings().db_retry_s:g} s; the attempt was stopped and the job handed back"})
        elif watched.killed_after_drain:
            interrupt_and_restart(session, run_id, exit_code=code, error={
                "code": "worker_shutdown", "message": "the worker shut down and the training process did not "
                f"checkpoint within {get_settings().drain_timeout_s:g} s; it was killed"})
        elif watched.killed_after_grace or (code == EXIT_STOPPED and (
                # A sweep's trial stops itself at a rung, maybe before this watch saw the request
                # (and a cancel or pause may have come since: finish_stopped ends it as asked last).
                watched.stop_requested or run.job.status in STOPPING_JOB_STATES)):
            checkpoint = None if watched.killed_after_grace else usable_checkpoint(session, run.job_id)
            finish_stopped(session, run_id, exit_code=code, killed=watched.killed_after_grace,
                           checkpoint_step=checkpoint.step if checkpoint else None)
        elif code == 0:
            message = "succeeded: training finished before the stop took effect" if watched.stop_requested else "succeeded"
            finish_run(session, run_id, RunStatus.SUCCEEDED, message, exit_code=code)
        elif code < 0 or code == EXIT_STOPPED:
            # Killed from outside (kill -9, the kernel's OOM killer), or stopped with a checkpoint
            # because its worker is shutting down: a lost attempt, like a lost worker.
            error = ({"code": "worker_shutdown", "message": "the worker shut down; the attempt checkpointed and stopped"}
                     if code == EXIT_STOPPED else {"code": "crashed", "message": ended.crash or _crash_message(code)})
            if code < 0:
                add_event(session, run.job_id, "run.traceback", _tail(log_path), run_id=run_id)
            interrupt_and_restart(session, run_id, error, exit_code=code)
        else:
            error = run.error or {"code": "crashed", "message": _crash_message(code, log_path)}
            finish_run(session, run_id, RunStatus.FAILED, f"failed: {error['message']}", exit_code=code, error=error)
            add_event(session, run.job_id, "run.traceback", _tail(log_path), run_id=run_id)
        return run.status  # `run` is the session's one copy, kept current


def _crash_message(code: int, log_path: Path | None = None) -> str:
    if code < 0:
        return f"the training process was killed by {signal.Signals(-code).name}"
    message = f"the training process exited with code {code}"
    if log_path is None or not log_path.is_file():
        return message
    # It ended without recording its error (an import failed, say): the log's last line says why.
    lines = [line.strip() for line in _tail(log_path).splitlines() if line.strip()]
    return f"{message}: {lines[-1][:500]}" if lines else message


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return "\n".join(lines[-TRACEBACK_LINES:])
