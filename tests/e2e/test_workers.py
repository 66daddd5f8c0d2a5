"""A real worker process registers itself (queues, no GPU on this CPU machine, the integrations
installed, library versions), keeps beating, is what submits are checked against, and marks
itself stopped when it shuts down."""

import signal
import time

from tests.e2e.conftest import upload
from tests.integration.conftest import ALPACA_ROWS, make_spec
from traindock.settings import get_settings


def live_worker(client, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        live = [worker for worker in client.get("/workers").json()["workers"] if worker["live"]]
        if live:
            return live[0]
        assert time.monotonic() < deadline, "the worker never registered"
        time.sleep(0.2)


def test_a_real_worker_registers_beats_gates_submits_and_marks_itself_stopped(stack, monkeypatch):
    monkeypatch.setenv("TRAINDOCK_ADMIN_TENANTS", '["e2e"]')
    get_settings.cache_clear()
    dataset_id = upload(stack, ALPACA_ROWS)

    worker = live_worker(stack)
    assert worker["queues"] == ["gpu"] and worker["gpus"] == [] and worker["pid"] == stack.worker.pid
    assert worker["gpu_ids"] == []
    assert "tensorboard" in worker["integrations"] and worker["versions"]["torch"] and worker["versions"]["peft"]
    first_beat = worker["heartbeat_at"]
    time.sleep(1.5)  # TRAINDOCK_HEARTBEAT_INTERVAL_S is 0.5 here
    assert live_worker(stack)["heartbeat_at"] > first_beat

    qlora = stack.post("/jobs", json=make_spec(dataset_id, base_model="tiny", method="qlora", training={"fp16": True}))
    assert qlora.status_code == 422 and "none has a CUDA GPU" in qlora.text

    stack.worker.send_signal(signal.SIGTERM)
    stack.worker.wait(timeout=60)
    [stopped] = stack.get("/workers").json()["workers"]
    assert not stopped["live"] and stopped["stopped_at"] is not None
    report = stack.post("/jobs/validate", json=make_spec(dataset_id, base_model="tiny", method="qlora",
                                                          training={"fp16": True})).json()
    assert report["valid"] and any("no live worker on queue 'gpu'" in w["msg"] for w in report["warnings"])
