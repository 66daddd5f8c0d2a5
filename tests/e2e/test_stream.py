"""A real training job followed through GET /jobs/{id}/stream (and `traindock watch`'s client)
from submission to its terminal status."""

import httpx
import pytest

from api.app import create_app
from tests.e2e.conftest import all_metrics, submit, upload
from tests.e2e.test_training import DEMO_ROWS, spec
from tests.live_server import serve
from traindock.cli.client import follow

pytestmark = pytest.mark.e2e


def test_the_stream_follows_a_training_job_to_its_end(stack):
    job = submit(stack, spec(upload(stack, DEMO_ROWS)))
    with serve(create_app()) as url, httpx.Client(base_url=url, headers=dict(stack.headers)) as client:
        events = list(follow(client, job["id"]))
    ids = [e.id for e in events]
    assert ids == sorted(set(ids))
    statuses = [e.data["status"] for e in events if e.type == "status"]
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "succeeded"
    assert events[-1].type == "status" and events[-1].data["result"]["final_model_path"]
    streamed = {(p["name"], p["step"]): p["value"] for e in events if e.type == "metrics" for p in e.data["points"]}
    stored = {(p["name"], p["step"]): p["value"] for p in all_metrics(stack, job["id"])}
    assert streamed == stored
    assert [e.data["step"] for e in events if e.type == "checkpoint"] == [4, 8, 12]
    assert any(e.type == "progress" and e.data["step"] == 12 for e in events)
