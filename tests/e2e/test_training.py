"""A posted job trains for real and everything it does is readable through the API."""

import json
import math
import os
import time
from importlib import resources
from pathlib import Path

import pytest

from tests.e2e.conftest import all_metrics, output_folder, start_worker, stop_worker, submit, upload, wait_for
from tests.integration.archives import archive_files, folder_files

pytestmark = pytest.mark.e2e

DEMO_ROWS = [
    json.loads(line)
    for line in resources.files("traindock").joinpath("data/alpaca_demo.jsonl").read_text().splitlines()
]


def spec(dataset_id: int, **training) -> dict:
    return {
        "base_model": "tiny",
        "dataset_id": dataset_id,
        "data": {"cutoff_len": 64, "val_set_size": 16},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "training": {
            "max_steps": 12, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
            "learning_rate": 5e-3, "optim": "adamw_torch", "logging_steps": 2,
            "eval_strategy": "steps", "eval_steps": 4, "save_steps": 4, "save_total_limit": 2,
            **training,
        },
    }


def checkpoint_folders(client, job: dict) -> set[int]:
    folder = output_folder(client, job)
    return {int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*")}


def test_lora_job_reports_progress_metrics_checkpoints_and_result(stack):
    job = submit(stack, {**spec(upload(stack, DEMO_ROWS)), "name": "lora"})
    job = wait_for(stack, job["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"]["step"] == job["progress"]["max_steps"] == 12
    assert job["progress"]["percent"] == 100

    losses = all_metrics(stack, job["id"], "loss")
    assert [p["step"] for p in losses] == [2, 4, 6, 8, 10, 12]
    assert all(math.isfinite(p["value"]) for p in losses)
    assert [p["step"] for p in all_metrics(stack, job["id"], "eval_loss")] == [4, 8, 12]
    names = {p["name"] for p in all_metrics(stack, job["id"])}
    assert {"loss", "learning_rate", "grad_norm", "epoch", "eval_loss"} <= names

    checkpoints = stack.get(f"/jobs/{job['id']}/checkpoints").json()
    assert [(c["step"], c["deleted"]) for c in checkpoints] == [(4, True), (8, False), (12, False)]
    on_disk = checkpoint_folders(stack, job)
    assert {c["step"] for c in checkpoints if not c["deleted"]} == on_disk == {8, 12}
    assert all((output_folder(stack, job) / c["path"]).is_dir() for c in checkpoints if not c["deleted"])
    assert checkpoints[1]["metrics"]["eval_loss"] == pytest.approx(
        all_metrics(stack, job["id"], "eval_loss")[1]["value"])

    final = output_folder(stack, job) / job["result"]["final_model_path"]
    assert (final / "adapter_config.json").exists() and (final / "adapter_model.safetensors").exists()
    assert archive_files(stack.get(job["final_model_download"]).content) == folder_files(final)
    events = stack.get(f"/jobs/{job['id']}/events").json()["items"]
    statuses = [e["data"]["to"] for e in events if e["type"].startswith("job.")]
    assert statuses == ["queued", "running", "succeeded"]


def test_full_fine_tune_succeeds(stack):
    job = submit(stack, {**spec(upload(stack, DEMO_ROWS), max_steps=4, eval_strategy="no"), "method": "full"})
    job = wait_for(stack, job["id"])
    assert job["status"] == "succeeded", job
    final = output_folder(stack, job) / job["result"]["final_model_path"]
    assert (final / "model.safetensors").exists() and not (final / "adapter_config.json").exists()


def test_best_checkpoint_is_the_one_with_the_lowest_eval_loss(stack):
    job = submit(stack, spec(upload(stack, DEMO_ROWS), save_total_limit=1, load_best_model_at_end=True,
                             metric_for_best_model="loss", learning_rate=0.05))
    job = wait_for(stack, job["id"])
    assert job["status"] == "succeeded", job
    evals = {p["step"]: p["value"] for p in all_metrics(stack, job["id"], "eval_loss")}
    best_step = min(evals, key=evals.get)
    checkpoints = stack.get(f"/jobs/{job['id']}/checkpoints").json()
    [best] = [c for c in checkpoints if c["is_best"]]
    assert best["step"] == best_step and not best["deleted"]
    assert job["result"]["best_checkpoint"] == best["path"]
    assert {c["step"] for c in checkpoints if not c["deleted"]} == checkpoint_folders(stack, job)


def test_fractional_epochs_give_the_estimated_number_of_steps(stack):
    body = spec(upload(stack, DEMO_ROWS), max_steps=-1, num_train_epochs=0.5, eval_strategy="no",
                save_strategy="no")
    estimated = stack.post("/jobs/validate", json=body).json()["estimates"]
    steps_per_epoch = math.ceil((len(DEMO_ROWS) - 16) / 4)
    assert estimated["total_steps"] == math.ceil(0.5 * steps_per_epoch)
    job = wait_for(stack, submit(stack, body)["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"]["max_steps"] == estimated["total_steps"]


def test_two_identical_jobs_have_bit_identical_losses(stack):
    dataset_id = upload(stack, DEMO_ROWS)
    body = spec(dataset_id, max_steps=6, logging_steps=1, eval_strategy="no", save_strategy="no")
    first, second = (submit(stack, body)["id"] for _ in range(2))
    for job_id in (first, second):
        assert wait_for(stack, job_id)["status"] == "succeeded"
    losses = [[p["value"] for p in all_metrics(stack, job_id, "loss")] for job_id in (first, second)]
    assert len(losses[0]) == 6
    assert losses[0] == losses[1]


def test_duplicate_delivery_starts_no_second_training_process(stack, tmp_path):
    from traindock.broker import producer, send_run

    second_worker = start_worker(tmp_path / "second-worker.log")
    try:
        job = submit(stack, spec(upload(stack, DEMO_ROWS), max_steps=100000, eval_strategy="no", save_strategy="no"))
        wait_for_event(stack, job["id"], "run.process_started")
        send_run(producer(), _run_id(stack, job["id"]), "gpu")  # the idle second worker takes it at once
        ignored = wait_for_event(stack, job["id"], "run.delivery_ignored")
        assert ignored["data"]["run_status"] == "running"
        stack.post(f"/jobs/{job['id']}/cancel")
        assert wait_for(stack, job["id"])["status"] == "cancelled"
    finally:
        stop_worker(second_worker)
    events = stack.get(f"/jobs/{job['id']}/events").json()["items"]
    assert sum(e["type"] == "run.process_started" for e in events) == 1


def test_a_job_whose_broker_message_was_never_sent_still_runs(stack):
    """The API process dies between the commit and the send: the workers' recovery sends it."""
    from db import lifecycle
    from db.engine import session_scope
    from db.hooks import AFTER_COMMIT
    from db.tenants import get_or_create_tenant
    from jobspec import JobSpec

    body = spec(upload(stack, DEMO_ROWS), max_steps=2, eval_strategy="no", save_strategy="no")
    with session_scope() as session:
        job = lifecycle.create_job(
            session, tenant_id=get_or_create_tenant(session, "e2e").id, dataset_id=body["dataset_id"],
            spec=JobSpec.model_validate({**body, "output_dir": "lost-send"}).model_dump(mode="json"),
            queue="gpu", name=None,
        )
        session.info.pop(AFTER_COMMIT)  # committed, never sent
    job = wait_for(stack, job.id)
    assert job["status"] == "succeeded", job
    assert [a["status"] for a in job["attempts"]] == ["succeeded"]


def _run_id(client, job_id: int) -> int:
    from db.engine import session_scope
    from db.runs import latest_run

    with session_scope() as session:
        return latest_run(session, job_id).id


def wait_until(condition, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
    return value


def wait_for_event(client, job_id: int, event_type: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.get(f"/jobs/{job_id}/events").json()["items"]:
            if event["type"] == event_type:
                return event
        time.sleep(0.1)
    pytest.fail(f"no {event_type} event for job {job_id}")


def test_cancel_running_job_checkpoints_the_stop_step_and_ends_the_process(stack):
    job = submit(stack, spec(upload(stack, DEMO_ROWS), max_steps=100000, eval_strategy="no",
                             save_strategy="no", logging_steps=1))
    started = wait_for_event(stack, job["id"], "run.process_started")
    wait_for(stack, job["id"], statuses={"running"})
    wait_until(lambda: (stack.get(f"/jobs/{job['id']}").json()["progress"] or {}).get("step"))
    assert stack.post(f"/jobs/{job['id']}/cancel").json()["status"] == "cancelling"
    job = wait_for(stack, job["id"])
    assert job["status"] == "cancelled"
    [checkpoint] = stack.get(f"/jobs/{job['id']}/checkpoints").json()
    assert (output_folder(stack, job) / checkpoint["path"]).is_dir()
    assert checkpoint["step"] == job["progress"]["step"]
    assert not _alive(started["data"]["pid"])
    assert "final_model_path" not in (job["result"] or {})
    assert stack.post(f"/jobs/{job['id']}/cancel").json()["status"] == "cancelled"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_a_failure_in_training_ends_failed_with_its_code_and_traceback(stack):
    dataset_id = upload(stack, DEMO_ROWS)
    (stack.backend.data_dir / "datasets" / f"{dataset_id}.jsonl").write_text("{not json\n")
    job = wait_for(stack, submit(stack, spec(dataset_id, max_steps=4))["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "bad_dataset"
    assert job["attempts"][0]["exit_code"] == 1 and job["attempts"][0]["error"] == job["error"]
    events = stack.get(f"/jobs/{job['id']}/events").json()["items"]
    [traceback] = [e for e in events if e["type"] == "run.traceback"]
    assert "Traceback" in traceback["message"]
