"""Webhooks end to end, on both backends: the webhook sender that `traindock worker` starts beside
itself delivers a real training job's events and a cancelled job's, signed (the `openai`
client's unwrap verifies them), retried after a failure, in order per job."""

import json
import time
from importlib import resources

import pytest
from openai import OpenAI

from tests.e2e.conftest import submit, upload, wait_for
from tests.webhook_receiver import receiving

pytestmark = pytest.mark.e2e

ROWS = [json.loads(line)
        for line in resources.files("traindock").joinpath("data/alpaca_demo.jsonl").read_text().splitlines()]
EVENT_TYPES = ["fine_tuning.job.running", "fine_tuning.job.checkpoint.saved", "fine_tuning.job.succeeded",
               "fine_tuning.job.cancelled"]


@pytest.fixture
def webhook_settings(monkeypatch):
    """Before `stack` starts the worker: the receiver is on loopback, and retries come quickly."""
    monkeypatch.setenv("TRAINDOCK_WEBHOOK_ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("TRAINDOCK_WEBHOOK_RETRY_BASE_S", "0.2")


def test_the_worker_delivers_a_trained_and_a_cancelled_jobs_events(webhook_settings, stack):
    unwrap = OpenAI(api_key="unused").webhooks.unwrap
    with receiving() as receiver:
        created = stack.post("/webhook_endpoints", json={"url": receiver.url, "event_types": EVENT_TYPES})
        assert created.status_code == 201, created.text
        secret = created.json()["signing_secret"]
        receiver.answers = [500]  # the first attempt fails and is retried
        dataset = upload(stack, ROWS)
        parked = submit(stack, {"base_model": "tiny", "dataset_id": dataset, "resources": {"queue": "nowhere"}})
        assert stack.post(f"/jobs/{parked['id']}/cancel").json()["status"] == "cancelled"
        trained = submit(stack, {"base_model": "tiny", "dataset_id": dataset, "data": {"cutoff_len": 64},
                                 "lora": {"r": 4}, "training": {"max_steps": 4, "per_device_train_batch_size": 4,
                                                                "save_steps": 2, "logging_steps": 2}})
        assert wait_for(stack, trained["id"])["status"] == "succeeded"

        def delivered() -> list[tuple[int, str]]:
            """(job id, type) of each message in order of arrival; a retried one once."""
            first = {r.headers["webhook-id"]: unwrap(r.body, r.headers, secret=secret) for r in reversed(receiver.requests)}
            return [(int(e.data.id.split("-")[1]), e.type) for e in reversed(first.values())]

        deadline = time.monotonic() + 60
        while not {(parked["id"], "fine_tuning.job.cancelled"), (trained["id"], "fine_tuning.job.succeeded")} <= set(delivered()):
            assert time.monotonic() < deadline, delivered()
            time.sleep(0.1)
        assert [kind for job_id, kind in delivered() if job_id == trained["id"]] == [
            "fine_tuning.job.running", "fine_tuning.job.checkpoint.saved", "fine_tuning.job.checkpoint.saved",
            "fine_tuning.job.succeeded"]
        assert len(receiver.requests) == 6  # five events, one of them sent twice
        log = stack.get(f"/webhook_endpoints/{created.json()['id']}/deliveries").json()["items"]
        assert all(d["status"] == "succeeded" for d in log) and len(log) == 5
        assert sorted(len(d["attempts"]) for d in log) == [1, 1, 1, 1, 2]
