"""The unchanged `openai` client drives a real training run: files, a job with a validation
file, its metrics events and checkpoints, and a second job that continues the first one's
fine-tuned model."""

import json
import time

import pytest
from openai import OpenAI

from tests.conftest import reset_caches
from tests.e2e.conftest import start_worker, stop_worker
from tests.e2e.test_training import DEMO_ROWS
from tests.integration.conftest import issue, jsonl
from tests.integration.openai_server import serve

pytestmark = pytest.mark.e2e
FINISHED = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def client(backend, models_root, monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINDOCK_MODEL_ROOTS", json.dumps([str(models_root)]))
    reset_caches()
    from api.app import create_app

    worker = start_worker(tmp_path / "worker.log")
    try:
        with serve(create_app()) as url:
            yield OpenAI(base_url=f"{url}/v1", api_key=issue("e2e"))
    finally:
        stop_worker(worker)


def wait(client: OpenAI, job_id: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while (job := client.fine_tuning.jobs.retrieve(job_id)).status not in FINISHED:
        assert time.monotonic() < deadline, f"{job_id} still {job.status}"
        time.sleep(0.2)
    return job


def first_train_loss(client: OpenAI, job_id: str) -> float:
    events = list(client.fine_tuning.jobs.list_events(job_id, limit=100))
    steps = {e.data["step"]: e.data for e in events if e.type == "metrics" and "train_loss" in e.data}
    return steps[min(steps)]["train_loss"]


def test_train_with_a_validation_file_then_continue_the_fine_tuned_model(client):
    train = client.files.create(file=("train.jsonl", jsonl(DEMO_ROWS[:24])), purpose="fine-tune")
    valid = client.files.create(file=("valid.jsonl", jsonl(DEMO_ROWS[24:32])), purpose="fine-tune")
    settings = {"hyperparameters": {"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 25}, "seed": 3,
                "extra_body": {"data": {"cutoff_len": 64}, "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                               "training": {"optim": "adamw_torch", "save_strategy": "epoch"}}}
    job = client.fine_tuning.jobs.create(model="tiny", training_file=train.id, validation_file=valid.id,
                                         suffix="demo", **settings)
    done = wait(client, job.id)
    assert done.status == "succeeded", done
    assert done.fine_tuned_model == f"ft:tiny:demo:{job.id}"
    assert done.trained_tokens > 0

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    metrics = [e.data for e in events if e.type == "metrics"]
    assert [m["step"] for m in metrics if "train_loss" in m] == [6, 5, 4, 3, 2, 1]  # newest first
    assert [m["step"] for m in metrics if "valid_loss" in m] == [6, 3]  # the validation file, per epoch
    assert events[0].message.startswith("job succeeded") or events[0].data["traindock_type"] == "job.succeeded"
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert [c.step_number for c in checkpoints] == [6, 3]
    assert checkpoints[0].metrics.valid_loss is not None
    assert done.fine_tuned_model in {m.id for m in client.models.list()}

    # The same job again from the fine-tuned model: with the same seed and data, a fresh adapter
    # would log the very same first loss; the continued one starts where the first job ended.
    again = client.fine_tuning.jobs.create(model=done.fine_tuned_model, training_file=train.id,
                                           validation_file=valid.id, **settings)
    continued = wait(client, again.id)
    assert continued.status == "succeeded", continued
    assert first_train_loss(client, again.id) < first_train_loss(client, job.id)
