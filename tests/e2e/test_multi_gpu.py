"""Jobs on several GPUs, on a CPU machine: a worker given fake GPU ids (`--gpus`) runs a job of
resources.gpus 2 as two torchrun ranks that train with gloo. On SQLite only: what differs from one
process (launch, ranks, agreement) does not depend on the backend, and each run costs two
interpreters on CI's two cores."""

import os
import resource
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import all_metrics, start_worker, stop_worker, submit, upload, wait_for
from tests.e2e.test_resume import comparable_metrics, step_of
from tests.e2e.test_training import DEMO_ROWS, spec, wait_for_event, wait_until
from worker.drain import child_pids

pytestmark = pytest.mark.e2e

TWO_OF_THREE = pytest.mark.parametrize("stack", ["4,2,7"], indirect=True)
# Per-step losses of two ranks x batch 4 against one process x batch 8: the same 8 examples per
# step (accelerate gives rank r the r-th batch of 4 of the sampler's order), the gradient of the
# whole batch's token mean on both (the Trainer divides by the tokens of all ranks); what differs
# is the order of float sums and the padding of each batch. Measured: training losses 4.8e-7 apart
# at most over 8 steps, evaluation losses (steps 4 and 8, the weights' differences grown) 3.2e-5.
LOSS_TOLERANCE = 1e-5
EVAL_LOSS_TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def sqlite_only(backend) -> None:
    """Before the stack starts a worker for nothing."""
    if backend.name == "postgres":
        pytest.skip("ranks do not depend on the backend; checked on SQLite")


def ranks_of(launcher_pid: int) -> list[int]:
    return child_pids(launcher_pid)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def job_logs(stack, job_id: int) -> Path:
    return stack.backend.data_dir / "logs" / f"job-{job_id}"


@TWO_OF_THREE
def test_two_ranks_train_as_one_process_with_the_whole_batch(stack):
    dataset_id = upload(stack, DEMO_ROWS)
    single = submit(stack, spec(dataset_id, max_steps=8, per_device_train_batch_size=8, logging_steps=1,
                                eval_steps=4, save_steps=4))
    double = submit(stack, {**spec(dataset_id, max_steps=8, per_device_train_batch_size=4, logging_steps=1,
                                   eval_steps=4, save_steps=4), "resources": {"gpus": 2}})
    started = wait_for_event(stack, double["id"], "run.process_started", timeout=240)
    launcher = started["data"]["pid"]
    ranks = wait_until(lambda: len(ranks_of(launcher)) == 2 and ranks_of(launcher))
    # The job's GPUs are the first two of the worker's set.
    for pid in ranks:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"CUDA_VISIBLE_DEVICES=4,2" in environ
    single, double = wait_for(stack, single["id"], timeout=300), wait_for(stack, double["id"], timeout=300)
    assert single["status"] == double["status"] == "succeeded", (single, double)

    losses = {p["step"]: p["value"] for p in all_metrics(stack, single["id"], "loss")}
    rank_losses = {p["step"]: p["value"] for p in all_metrics(stack, double["id"], "loss")}
    assert sorted(rank_losses) == sorted(losses) == list(range(1, 9))
    print("largest per-step loss difference:", max(abs(rank_losses[s] - losses[s]) for s in losses))
    assert max(abs(rank_losses[s] - losses[s]) for s in losses) < LOSS_TOLERANCE, (losses, rank_losses)
    evals = [p["value"] for p in all_metrics(stack, single["id"], "eval_loss")]
    rank_evals = [p["value"] for p in all_metrics(stack, double["id"], "eval_loss")]
    assert rank_evals == pytest.approx(evals, abs=EVAL_LOSS_TOLERANCE)
    # Tokens are counted over both ranks, once.
    assert double["result"]["num_input_tokens_seen"] == single["result"]["num_input_tokens_seen"]
    assert 0 < double["result"]["padding_efficiency"] <= 1
    # Real tokens are the ranks' own counts, summed: as many as the Trainer's non-padding count.
    progress = double["progress"]
    assert progress["real_tokens_per_second"] == pytest.approx(progress["tokens_per_second"], rel=1e-9)

    # Rank 0 alone reported: one checkpoint row and one event per save.
    checkpoints = stack.get(f"/jobs/{double['id']}/checkpoints").json()
    assert sorted(c["step"] for c in checkpoints) == [4, 8]
    events = stack.get(f"/jobs/{double['id']}/events").json()["items"]
    assert sorted(e["data"]["step"] for e in events if e["type"] == "checkpoint.saved") == [4, 8]
    logs = job_logs(stack, double["id"])
    assert {p.name for p in logs.iterdir()} == {
        "attempt-1.log", "attempt-1.rank-0.log", "attempt-1.rank-1.log", "attempt-1.rank-0.exit",
        "attempt-1.rank-1.exit"}
    rank_log = stack.get(f"/jobs/{double['id']}/logs", params={"rank": 1})
    assert rank_log.content == (logs / "attempt-1.rank-1.log").read_bytes()
    assert stack.get(f"/jobs/{double['id']}/logs", params={"rank": 2}).status_code == 404


def launcher_of(stack, job_id: int, attempt: int) -> int:
    """The pid of an attempt's torchrun (the process the supervisor started)."""
    def find():
        events = stack.get(f"/jobs/{job_id}/events").json()["items"]
        return next((e["data"]["pid"] for e in events
                     if e["type"] == "run.process_started" and e["data"]["attempt"] == attempt), None)
    return wait_until(find, timeout=120)


def usable_steps(stack, job_id: int) -> set[int]:
    return {c["step"] for c in stack.get(f"/jobs/{job_id}/checkpoints").json() if not c["deleted"]}


@TWO_OF_THREE
def test_cancel_resume_and_a_killed_rank_continue_the_uninterrupted_run(stack):
    body = {**spec(upload(stack, DEMO_ROWS), max_steps=120, logging_steps=1, eval_steps=20, save_steps=10,
                   save_total_limit=2), "resources": {"gpus": 2}}
    reference = wait_for(stack, submit(stack, body)["id"], timeout=400)
    assert reference["status"] == "succeeded", reference

    # 1. Cancel: both ranks checkpoint the same step and stop; the resume continues from it.
    job = submit(stack, body)
    wait_until(lambda: step_of(stack, job["id"]) >= 10, timeout=240)
    stack.post(f"/jobs/{job['id']}/cancel")
    halted = wait_for(stack, job["id"], statuses={"cancelled", "succeeded", "failed"})
    assert halted["status"] == "cancelled", halted
    stop_step = halted["progress"]["step"]
    assert 10 <= stop_step < 100, "the stop arrived too late to test a resume"
    assert stop_step in usable_steps(stack, job["id"])
    assert stack.post(f"/jobs/{job['id']}/resume").status_code == 202

    # 2. kill -9 of one rank of the resumed attempt: torchrun ends the other, nothing survives, and
    # the job restarts from its latest checkpoint.
    launcher = launcher_of(stack, job["id"], 2)
    ranks = wait_until(lambda: len(ranks_of(launcher)) == 2 and ranks_of(launcher))
    wait_until(lambda: max(usable_steps(stack, job["id"])) > stop_step, timeout=240)
    os.kill(ranks[1], signal.SIGKILL)
    wait_until(lambda: len(stack.get(f"/jobs/{job['id']}").json()["attempts"]) == 3, timeout=120)
    assert not [pid for pid in [launcher, *ranks] if alive(pid)]

    finished = wait_for(stack, job["id"], timeout=400)
    assert finished["status"] == "succeeded", finished
    attempts = finished["attempts"]
    assert [(a["status"], a["reason"]) for a in attempts] == [
        ("cancelled", "submitted"), ("interrupted", "resumed"), ("succeeded", "restarted")]
    assert attempts[1]["error"]["code"] == "crashed"
    assert "rank 1 of 2 was killed by SIGKILL" in attempts[1]["error"]["message"]
    assert comparable_metrics(stack, job["id"]) == comparable_metrics(stack, reference["id"])


@pytest.mark.parametrize("stack", ["3"], indirect=True)
def test_a_worker_with_fewer_gpus_than_the_job_refuses_it(stack, tmp_path):
    dataset_id = upload(stack, DEMO_ROWS)
    wait_until(lambda: [q for q in stack.get("/workers").json()["queues"] if q["queue"] == "gpu"], timeout=60)
    refused = stack.post("/jobs", json={**spec(dataset_id), "resources": {"gpus": 2}})
    assert refused.status_code == 422 and "at most 1" in str(refused.json()["detail"])
    # Queued while no worker of its queue was live, then taken by one with too few GPUs.
    job = submit(stack, {**spec(dataset_id), "resources": {"gpus": 2, "queue": "later"}})
    late = start_worker(tmp_path / "late.log", gpus="5", queues="later")
    try:
        job = wait_for(stack, job["id"])
    finally:
        stop_worker(late)
    assert job["status"] == "failed" and job["error"]["code"] == "not_enough_gpus"
    assert "needs 2 GPUs (resources.gpus)" in job["error"]["message"] and "has 1 (5)" in job["error"]["message"]
    events = stack.get(f"/jobs/{job['id']}/events").json()["items"]
    assert not [e for e in events if e["type"] == "run.process_started"]



def endless_two_rank_job_training(stack) -> tuple[dict, int, list[int]]:
    """A 2-GPU job with no end and no checkpoint, past its second step: (job, torchrun's pid, ranks)."""
    job = submit(stack, {**spec(upload(stack, DEMO_ROWS), max_steps=100000, eval_strategy="no",
                                save_strategy="no"), "resources": {"gpus": 2}})
    launcher = launcher_of(stack, job["id"], 1)
    ranks = wait_until(lambda: len(ranks_of(launcher)) == 2 and ranks_of(launcher))
    wait_until(lambda: step_of(stack, job["id"]) >= 2, timeout=240)
    return job, launcher, ranks

@TWO_OF_THREE
def test_out_of_memory_on_one_rank_fails_the_job_with_that_ranks_error_and_log(stack):
    job, launcher, _ = endless_two_rank_job_training(stack)
    rank_1 = next(pid for pid in ranks_of(launcher)
                  if b"RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    # A real out-of-memory on rank 1 alone: its address space may not grow past what it holds now.
    held = int(next(line.split()[1] for line in Path(f"/proc/{rank_1}/status").read_text().splitlines()
                    if line.startswith("VmSize:"))) * 1024
    resource.prlimit(rank_1, resource.RLIMIT_AS, (held, held))
    job = wait_for(stack, job["id"], timeout=240)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "out_of_memory", job["error"]
    events = stack.get(f"/jobs/{job['id']}/events").json()["items"]
    [traceback] = [e for e in events if e["type"] == "run.traceback"]
    assert "can't allocate memory" in traceback["message"] or "out of memory" in traceback["message"].lower()


@TWO_OF_THREE
def test_a_worker_shutdown_checkpoints_every_rank_and_hands_the_job_back(stack):
    job, launcher, ranks = endless_two_rank_job_training(stack)
    stack.worker.send_signal(signal.SIGTERM)  # a warm shutdown: drain
    stack.worker.wait(timeout=120)
    job = stack.get(f"/jobs/{job['id']}").json()
    first, handed_back = job["attempts"]  # the draining worker passed the handed-back run on unclaimed
    assert (first["status"], first["error"]["code"]) == ("interrupted", "worker_shutdown")
    assert handed_back["reason"] == "handed_back"
    assert handed_back["resume_step"] >= 2 and handed_back["resume_step"] in usable_steps(stack, job["id"])
    assert job["status"] == "queued" and job["attempts"][-1]["status"] == "queued"
    assert not [pid for pid in [launcher, *ranks] if alive(pid)]


@TWO_OF_THREE
def test_no_rank_outlives_its_supervisor(stack):
    job, launcher, ranks = endless_two_rank_job_training(stack)
    supervisor = int(Path(f"/proc/{launcher}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(supervisor, signal.SIGKILL)  # the Celery pool process that runs the task
    try:
        wait_until(lambda: not [pid for pid in [launcher, *ranks] if alive(pid)], timeout=10)
    finally:
        for pid in [pid for pid in ranks if alive(pid)]:  # a failed check leaves nothing running
            os.kill(pid, signal.SIGKILL)
