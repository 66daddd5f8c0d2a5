"""Spare training processes (worker/warm.py): a worker's jobs start in a process that imported
torch, transformers and peft before the job came, each job still gets a process of its own, a
spare with another environment is never used, and no spare outlives its worker. A spare handed a
job shows its run in its process title; one whose imports fail after it was handed its job leaves
the traceback in the attempt's log."""

import os
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import start_worker, stop_worker, submit, upload, wait_for
from tests.e2e.test_multi_gpu import alive
from tests.e2e.test_stop_moments import holds  # noqa: F401 (a fixture)
from tests.e2e.test_training import DEMO_ROWS, spec, wait_for_event

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


def test_a_spare_handed_a_job_shows_its_run_in_its_process_title(request, backend, holds):  # noqa: F811
    if backend.name == "postgres":
        pytest.skip("the title is the training process's, whatever the backend; checked on SQLite")
    holds.arm("tokenizing")  # the run is read and the job has begun
    stack = request.getfixturevalue("stack")
    job = submit(stack, spec(upload(stack, DEMO_ROWS)))
    holds.wait_reached("tokenizing")
    pid = started_pid(stack, job["id"])
    assert int((holds.folder / "tokenizing.reached").read_text()) == pid
    title = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode()
    holds.release("tokenizing")
    job = wait_for(stack, job["id"])
    assert job["status"] == "succeeded" and job["result"]["startup"]["warm"] is True, job
    assert re.fullmatch(rf"traindock-train job {job['id']} run \d+ attempt 1", title), title


def test_a_spare_whose_imports_fail_after_it_was_handed_a_job_leaves_the_traceback(
        request, backend, holds, monkeypatch, tmp_path):  # noqa: F811
    """The spare is held before its heavy imports until its job was handed over; then one of them
    (peft, shadowed by a broken package on PYTHONPATH, which only training processes import) fails."""
    if backend.name == "postgres":
        pytest.skip("the spare's output does not depend on the backend; checked on SQLite")
    broken = tmp_path / "broken"
    (broken / "peft").mkdir(parents=True)
    (broken / "peft" / "__init__.py").write_text('raise ImportError("peft is broken on purpose, by a test")\n')
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(broken), os.environ.get("PYTHONPATH")])))
    holds.arm("imports")  # before the worker starts: its first spare holds there
    stack = request.getfixturevalue("stack")
    job = submit(stack, spec(upload(stack, DEMO_ROWS)))
    wait_for_event(stack, job["id"], "run.process_started")  # handed to the spare, still held
    holds.wait_reached("imports")
    holds.release("imports")
    job = wait_for(stack, job["id"])
    assert job["status"] == "failed", job
    first = job["attempts"][0]
    assert first["error"]["code"] == "crashed", first
    assert "ImportError: peft is broken on purpose, by a test" in first["error"]["message"], first
    assert "peft is broken on purpose" in job["error"]["message"], job["error"]
    log = stack.get(f"/jobs/{job['id']}/logs", params={"attempt": 1})
    assert log.status_code == 200, log.text
    assert "Traceback (most recent call last)" in log.text and "peft/__init__.py" in log.text, log.text
    assert "ImportError: peft is broken on purpose, by a test" in log.text
    tracebacks = [e["message"] for e in stack.get(f"/jobs/{job['id']}/events").json()["items"]
                  if e["type"] == "run.traceback"]
    assert tracebacks and "peft is broken on purpose" in tracebacks[0], tracebacks
