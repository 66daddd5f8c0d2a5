"""Cancel, resume and recovery from lost attempts, with real signals and bit-exact continuation."""

import os
import signal

import pytest

from tests.e2e.conftest import all_metrics, output_folder, start_worker, stop_worker, submit, upload, wait_for
from tests.e2e.test_training import DEMO_ROWS, spec, wait_for_event, wait_until
from tests.worker.test_preference import CHOSEN, REJECTED

PAIRS = [{"prompt": f"Tell me fact number {i}.", "chosen": CHOSEN, "rejected": REJECTED} for i in range(48)]

pytestmark = pytest.mark.e2e

def is_timing(name: str) -> bool:
    """Wall-clock measurements (eval_runtime, train_tokens_per_second...) differ between runs."""
    return name.endswith(("_runtime", "_per_second"))


def comparable_metrics(client, job_id: int) -> dict[tuple[str, int], float]:
    """Every logged metric but timings and train_loss: the Trainer's end-of-attempt summary, which
    averages only the steps that attempt trained."""
    return {(p["name"], p["step"]): p["value"] for p in all_metrics(client, job_id)
            if not is_timing(p["name"]) and p["name"] != "train_loss"}


def long_spec(dataset_id: int, layout: dict | None = None, **training) -> dict:
    """The long job; `layout` adds spec sections (data, objective...)."""
    job = spec(dataset_id, **{"max_steps": 240, "logging_steps": 1, "eval_steps": 40, "save_steps": 40,
                              "save_total_limit": 2, **training})
    for name, value in (layout or {}).items():
        job[name] = {**job[name], **value} if isinstance(value, dict) else value
    return job


def step_of(client, job_id: int) -> int:
    return (client.get(f"/jobs/{job_id}").json()["progress"] or {}).get("step") or 0


STOPS = {"cancel": ("cancelling", "cancelled"), "pause": ("pausing", "paused")}


# Packed rows, length-grouped batches and DPO's preference pairs (TRL's trainer, its reward
# metrics and evaluations) come back in the same order after a resume too. A pause stops the way a
# cancel does, so it is tried with the padded layout only.
@pytest.mark.parametrize("layout, verbs", [({}, ["cancel", "pause"]), ({"data": {"packing": True}}, ["cancel"]),
                                           ({"data": {"group_by_length": True}}, ["cancel"]),
                                           # fewer steps: a DPO step runs the policy and the reference
                                           ({"objective": "dpo", "training": {"max_steps": 60, "eval_steps": 20,
                                                                              "save_steps": 20}}, ["cancel"])],
                         ids=["padded", "packed", "grouped", "dpo"])
def test_stopped_then_resumed_jobs_equal_the_uninterrupted_run(stack, layout, verbs):
    if layout and stack.backend.name == "postgres":
        pytest.skip("the data layout does not depend on the backend; its resume is checked on SQLite")
    dataset_id = upload(stack, PAIRS if "objective" in layout else DEMO_ROWS)
    reference = wait_for(stack, submit(stack, long_spec(dataset_id, layout))["id"])
    assert reference["status"] == "succeeded", reference
    if "objective" in layout:
        names = {point["name"] for point in all_metrics(stack, reference["id"])}
        assert {"rewards/margins", "eval_rewards/accuracies"} <= names
    for verb in verbs:
        stopping, stopped = STOPS[verb]
        job = stop_then_resume(stack, long_spec(dataset_id, layout), verb, stopped)
        assert comparable_metrics(stack, job["id"]) == comparable_metrics(stack, reference["id"]), verb
        events = stack.get(f"/jobs/{job['id']}/events").json()["items"]
        assert [(e["type"], e["data"].get("attempt")) for e in events if e["type"].startswith("job.")] == [
            ("job.queued", 1), ("job.running", 1), (f"job.{stopping}", 1), (f"job.{stopped}", 1),
            ("job.queued", 2), ("job.running", 2), ("job.succeeded", 2)]


def stop_then_resume(stack, job_spec: dict, verb: str, stopped: str) -> dict:
    total = job_spec["training"]["max_steps"]
    stop_from = min(50, total // 4)  # past the first checkpoints, well before the end
    job = submit(stack, job_spec)
    wait_until(lambda: step_of(stack, job["id"]) >= stop_from)
    stack.post(f"/jobs/{job['id']}/{verb}")
    halted = wait_for(stack, job["id"], statuses={stopped, "succeeded", "failed"})
    assert halted["status"] == stopped, halted
    stop_step = halted["progress"]["step"]
    assert stop_from <= stop_step < total, "the stop arrived too late to test a resume"
    checkpoints = {c["step"]: c for c in stack.get(f"/jobs/{job['id']}/checkpoints").json()}
    assert stop_step in checkpoints and not checkpoints[stop_step]["deleted"]

    resumed = stack.post(f"/jobs/{job['id']}/resume")  # no body: from the latest checkpoint
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["status"] == "queued" and resumed.json()["warnings"] == []
    assert [(a["attempt"], a["reason"], a["resume_step"]) for a in resumed.json()["attempts"]] == [
        (1, "submitted", None), (2, "resumed", stop_step)]
    finished = wait_for(stack, job["id"])
    assert finished["status"] == "succeeded", finished
    assert finished["progress"]["step"] == total and finished["progress"]["attempt"] == 2
    return finished


def test_resume_rules_and_extending_a_finished_job(stack):
    dataset_id = upload(stack, DEMO_ROWS)
    job = submit(stack, spec(dataset_id, max_steps=8, eval_strategy="no", save_steps=4))
    assert stack.post(f"/jobs/{job['id']}/resume").status_code == 409  # still queued or running
    assert wait_for(stack, job["id"])["status"] == "succeeded"

    assert stack.post(f"/jobs/{job['id']}/resume").status_code == 409  # nothing to extend
    refused = stack.post(f"/jobs/{job['id']}/resume", json={"overrides": {"learning_rate": 1.0}})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "overrides", "learning_rate"]
    missing = stack.post(f"/jobs/{job['id']}/resume", json={"checkpoint_step": 5, "overrides": {"max_steps": 12}})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "checkpoint_step"]
    assert stack.post("/jobs/999/resume").status_code == 404

    extended = stack.post(f"/jobs/{job['id']}/resume", json={"overrides": {"max_steps": 12}})
    assert extended.status_code == 202, extended.text
    assert extended.json()["attempts"][-1]["resume_step"] == 8
    assert stack.post(f"/jobs/{job['id']}/resume", json={"overrides": {"max_steps": 16}}).status_code == 409
    done = wait_for(stack, job["id"])
    assert done["status"] == "succeeded" and done["progress"]["step"] == 12
    assert [p["step"] for p in all_metrics(stack, job["id"], "loss")] == [2, 4, 6, 8, 10, 12]
    assert done["spec"]["training"]["max_steps"] == 12


def test_resume_from_an_earlier_step_sets_later_checkpoints_aside(stack):
    dataset_id = upload(stack, DEMO_ROWS)
    job = submit(stack, spec(dataset_id, max_steps=12, eval_strategy="no", save_steps=4, save_total_limit=3))
    job = wait_for(stack, job["id"])
    assert job["status"] == "succeeded"
    response = stack.post(f"/jobs/{job['id']}/resume",
                          json={"checkpoint_step": 4, "overrides": {"max_steps": 16, "save_total_limit": 1}})
    assert response.status_code == 202, response.text
    job = wait_for(stack, job["id"])
    assert job["status"] == "succeeded"
    checkpoints = stack.get(f"/jobs/{job['id']}/checkpoints").json()
    usable = [c for c in checkpoints if not c["deleted"]]
    # The rerun's own newest checkpoint survives rotation, not a stale one from before the resume.
    assert [c["step"] for c in usable] == [16]
    output = output_folder(stack, job)
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-16"]
    assert {p.name for p in (output / "superseded").glob("attempt-2/checkpoint-*")} == {"checkpoint-8", "checkpoint-12"}


def test_ignore_data_skip_resume_warns(stack):
    dataset_id = upload(stack, DEMO_ROWS)
    job = submit(stack, spec(dataset_id, max_steps=4, eval_strategy="no", save_steps=2, ignore_data_skip=True))
    assert wait_for(stack, job["id"])["status"] == "succeeded"
    response = stack.post(f"/jobs/{job['id']}/resume", json={"overrides": {"max_steps": 6}})
    assert response.status_code == 202
    assert "ignore_data_skip" in response.json()["warnings"][0]
    assert wait_for(stack, job["id"])["status"] == "succeeded"


def test_lost_training_process_and_lost_worker_resume_automatically(stack, tmp_path):
    dataset_id = upload(stack, DEMO_ROWS)
    body = long_spec(dataset_id, save_steps=20, eval_steps=20)
    reference = wait_for(stack, submit(stack, body)["id"])
    assert reference["status"] == "succeeded"

    job = submit(stack, body)
    # 1. kill -9 of the training process: the supervisor restarts it from the latest checkpoint
    started = wait_for_event(stack, job["id"], "run.process_started")
    wait_until(lambda: any(not c["deleted"] for c in stack.get(f"/jobs/{job['id']}/checkpoints").json()))
    os.kill(started["data"]["pid"], signal.SIGKILL)
    wait_until(lambda: len(stack.get(f"/jobs/{job['id']}").json()["attempts"]) == 2)

    # 2. kill -9 of the worker that runs attempt 2: a live worker notices the stale heartbeat
    survivor = start_worker(tmp_path / "survivor.log")
    try:
        wait_until(lambda: stack.get(f"/jobs/{job['id']}").json()["attempts"][-1]["status"] == "running")
        wait_until(lambda: step_of(stack, job["id"]) > 20 + (stack.get(f"/jobs/{job['id']}").json()["attempts"][-1]["resume_step"] or 0))
        os.kill(stack.worker.pid, signal.SIGKILL)
        finished = wait_for(stack, job["id"], timeout=240)
    finally:
        stop_worker(survivor)
    assert finished["status"] == "succeeded", finished
    attempts = finished["attempts"]
    assert [(a["status"], a["reason"]) for a in attempts] == [
        ("interrupted", "submitted"), ("interrupted", "restarted"), ("succeeded", "restarted")]
    assert attempts[0]["error"]["code"] == "crashed" and "SIGKILL" in attempts[0]["error"]["message"]
    assert attempts[1]["error"]["code"] == "worker_lost"
    assert comparable_metrics(stack, job["id"]) == comparable_metrics(stack, reference["id"])
    events = stack.get(f"/jobs/{job['id']}/events").json()["items"]
    assert sum(e["type"] == "run.process_started" for e in events) == 3


def test_no_restart_when_max_restarts_is_zero(stack):
    job = submit(stack, {**spec(upload(stack, DEMO_ROWS), max_steps=100000, eval_strategy="no", save_strategy="no"),
                         "resources": {"max_restarts": 0}})
    started = wait_for_event(stack, job["id"], "run.process_started")
    os.kill(started["data"]["pid"], signal.SIGKILL)
    job = wait_for(stack, job["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "crashed" and "0 of 0 automatic restarts" in job["error"]["message"]
