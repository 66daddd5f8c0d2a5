"""Spare training processes (worker/warm.py): a worker's jobs start in a process that imported
torch, transformers and peft before the job came, each job still gets a process of its own, a
spare with another environment is never used, and no spare outlives its worker."""

import pytest

from tests.e2e.conftest import start_worker, stop_worker, submit, upload, wait_for
from tests.e2e.test_multi_gpu import alive
from tests.e2e.test_training import DEMO_ROWS, spec

pytestmark = pytest.mark.e2e


def spares_of(worker_pid: int) -> list[int]:
    """The worker's idle spare training processes (children of its pool processes)."""
    from worker.drain import child_pids

    return [pid for pool in child_pids(worker_pid) for pid in child_pids(pool)
            if b"--warm" in open(f"/proc/{pid}/cmdline", "rb").read()]


def started_pid(client, job_id: int) -> int:
    events = client.get(f"/jobs/{job_id}/events").json()["items"]
    [started] = [e for e in events if e["type"] == "run.process_started"]
    return started["data"]["pid"]


def test_jobs_start_in_spare_processes_that_did_their_imports_before(stack, tmp_path, monkeypatch):
    if stack.backend.name == "postgres":
        pytest.skip("the spare is the worker's, whatever the backend; checked on SQLite")
    dataset_id = upload(stack, DEMO_ROWS)
    first = wait_for(stack, submit(stack, spec(dataset_id))["id"])
    second = wait_for(stack, submit(stack, spec(dataset_id))["id"])
    for job in (first, second):
        assert job["status"] == "succeeded", job
        startup = job["result"]["startup"]
        assert startup["warm"] is True and startup["imports_s"] < 0.05, startup
    assert started_pid(stack, first["id"]) != started_pid(stack, second["id"])  # one process per job
    [spare] = spares_of(stack.worker.pid)  # the next job's, ready
    assert spare not in (started_pid(stack, first["id"]), started_pid(stack, second["id"]))

    stop_worker(stack.worker)
    assert not alive(spare)

    monkeypatch.setenv("TRAINDOCK_WARM_START", "false")
    cold_worker = start_worker(tmp_path / "cold.log")
    try:
        assert spares_of(cold_worker.pid) == []
        cold = wait_for(stack, submit(stack, spec(dataset_id))["id"])
    finally:
        stop_worker(cold_worker)
    assert cold["status"] == "succeeded" and cold["result"]["startup"]["warm"] is False
    assert cold["result"]["startup"]["imports_s"] > 0.5  # torch and transformers, imported after the job came
