"""A stop request (SIGUSR1 from the supervisor on cancel, SIGTERM on shutdown) checkpoints the step
reached and exits with EXIT_STOPPED; the next attempt resumes from that checkpoint."""

import signal
import subprocess
import time
from pathlib import Path

from db.checkpoints import list_checkpoints
from db.engine import session_scope
from db.jobs import get_job
from db.metrics import list_metrics
from db.lifecycle import claim_run, interrupt_and_restart
from db.runs import get_run, latest_run
from tests.worker.conftest import (
    DEMO_ROWS, REPO, TRAINING_TIMEOUT_S, install_tiny_model, output_of, process_env, run_training,
    start_job, training_command, write_dataset,
)
from worker.errors import EXIT_STOPPED

MAX_STEPS = 200
LONG_JOB = {
    "data": {"cutoff_len": 64},
    "training": {"max_steps": MAX_STEPS, "per_device_train_batch_size": 2, "logging_steps": 1,
                 "learning_rate": 1e-3, "optim": "adamw_torch", "save_strategy": "no"},
}


def stop_mid_run(backend, job_id: int, run_id: int, signum: int) -> subprocess.CompletedProcess:
    """Start the process, send `signum` once a few steps are reported, wait for the exit."""
    process = subprocess.Popen(training_command(run_id), env=process_env(backend), cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    while True:
        with session_scope() as session:
            progress = get_job(session, job_id).progress
        if progress and progress["step"] >= 2:
            break
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no progress reported"
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=TRAINING_TIMEOUT_S)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_stopped_with_checkpoint(process, job_id: int) -> int:
    assert process.returncode == EXIT_STOPPED, output_of(process)
    with session_scope() as session:
        job = get_job(session, job_id)
        [checkpoint] = list_checkpoints(session, job_id)
        loss_steps = [point.step for point in list_metrics(session, job_id, names=["loss"])]
    stop_step = checkpoint.step
    assert 2 <= stop_step < MAX_STEPS
    assert Path(checkpoint.path).name == f"checkpoint-{stop_step}" and Path(checkpoint.path).is_dir()
    assert not checkpoint.deleted
    assert checkpoint.metrics["loss"] > 0
    assert job.progress["step"] == stop_step
    assert loss_steps == list(range(1, stop_step + 1))
    assert job.result is None
    assert not (Path(checkpoint.path).parent / "final").exists()
    return stop_step


def test_sigusr1_checkpoints_the_current_step_and_exits_stopped(backend):
    install_tiny_model()
    started = start_job(write_dataset(DEMO_ROWS, "alpaca"), **LONG_JOB)

    process = stop_mid_run(backend, started.job_id, started.run_id, signal.SIGUSR1)

    assert_stopped_with_checkpoint(process, started.job_id)
    with session_scope() as session:
        assert get_run(session, started.run_id).error is None


def test_sigterm_stops_and_the_next_attempt_resumes_from_the_checkpoint(sqlite_backend):
    install_tiny_model()
    started = start_job(write_dataset(DEMO_ROWS, "alpaca"), **LONG_JOB)
    stop_step = assert_stopped_with_checkpoint(
        stop_mid_run(sqlite_backend, started.job_id, started.run_id, signal.SIGTERM), started.job_id
    )
    with session_scope() as session:  # what the supervisor does when its worker shuts down
        interrupt_and_restart(session, started.run_id, {"code": "worker_shutdown", "message": "shut down"}, exit_code=3)
        resumed = latest_run(session, started.job_id)
        assert (resumed.reason, resumed.resume_step) == ("handed_back", stop_step)
        resumed_id = resumed.id
    with session_scope() as session:
        assert claim_run(session, resumed_id, "test-worker") is not None

    process = run_training(sqlite_backend, resumed_id)

    assert process.returncode == 0, output_of(process)
    with session_scope() as session:
        job = get_job(session, started.job_id)
        losses = list_metrics(session, started.job_id, names=["loss"])
    assert job.result["global_step"] == MAX_STEPS
    assert job.progress["step"] == MAX_STEPS and job.progress["attempt"] == 2
    assert [point.step for point in losses] == list(range(1, MAX_STEPS + 1))
    assert {point.run_id for point in losses if point.step > stop_step} == {resumed_id}
    assert {point.run_id for point in losses if point.step <= stop_step} == {started.run_id}


def test_a_stop_asked_during_start_up_exits_stopped(sqlite_backend):
    """The handlers are installed before the heavy imports (SIGUSR1 would otherwise kill)."""
    install_tiny_model()
    started = start_job(write_dataset(DEMO_ROWS, "alpaca"), **LONG_JOB)
    process = subprocess.Popen(training_command(started.run_id), env=process_env(sqlite_backend), cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    process.send_signal(signal.SIGUSR1)
    _, stderr = process.communicate(timeout=TRAINING_TIMEOUT_S)

    assert process.returncode == EXIT_STOPPED, stderr[-6000:]
    with session_scope() as session:
        assert get_job(session, started.job_id).result is None
        assert get_run(session, started.run_id).error is None

