"""Sweeps on the tiny model with a real worker: a full grid of learning rates names its best trial
(the API restarted mid-sweep); the same grid with ASHA stops trials at rung steps and names the
same best; cancelling a sweep cancels its running trial."""

import json
import time
from importlib import resources

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import upload

pytestmark = pytest.mark.e2e

ROWS = [json.loads(line) for line in
        resources.files("traindock").joinpath("data/alpaca_demo.jsonl").read_text().splitlines()]
# Not sorted: ASHA compares each trial with those that reported before it.
LRS = [1e-2, 1e-4, 1.0, 1e-3]


def sweep_request(dataset_id: int, **overrides) -> dict:
    base = {"base_model": "tiny", "dataset_id": dataset_id, "data": {"cutoff_len": 64},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
            "training": {"max_steps": 27, "per_device_train_batch_size": 4, "optim": "adamw_torch",
                         "logging_steps": 1, "save_strategy": "no", "lr_scheduler_type": "constant"}}
    return {"name": "lr", "base": base, "method": "grid", "max_concurrent_trials": 1,
            "parameters": {"training.learning_rate": {"values": LRS}}, "metric": {"name": "loss"}, **overrides}


def wait_for_sweep(client, sweep_id: int, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while (sweep := client.get(f"/sweeps/{sweep_id}").json())["status"] == "running":
        assert time.monotonic() < deadline, sweep
        time.sleep(0.2)
    return sweep


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_full_grid_and_asha_name_the_same_best_trial(stack):
    dataset = upload(stack, ROWS)
    # The API that creates the sweep goes away: the trials go on without it (the controller is the
    # workers' and the stored rows').
    from api.app import create_app

    with TestClient(create_app(), headers=dict(stack.headers)) as first_api:
        created = first_api.post("/sweeps", json=sweep_request(dataset))
        assert created.status_code == 201, created.text
    grid = wait_for_sweep(stack, created.json()["id"])
    assert grid["status"] == "succeeded" and len(grid["trials"]) == 4, grid
    assert {t["status"] for t in grid["trials"]} == {"succeeded"}
    finals = {t["trial"]: t["metric"] for t in grid["trials"]}
    assert grid["best"]["trial"] == min(finals, key=finals.get)
    assert all(t["metric_step"] == 27 for t in grid["trials"])

    asha = stack.post("/sweeps", json=sweep_request(dataset, early_stopping={"grace_steps": 3, "reduction_factor": 3}))
    assert asha.status_code == 201, asha.text
    asha = wait_for_sweep(stack, asha.json()["id"])
    stopped = [t for t in asha["trials"] if t["status"] == "early_stopped"]
    # A stopped trial's last step is its rung: the training process stopped at that very step.
    assert stopped and all(t["metric_step"] in (3, 9) for t in stopped), asha["trials"]
    for trial in stopped:
        job = stack.get(f"/jobs/{trial['job_id']}").json()
        assert job["progress"]["step"] == trial["metric_step"]
        checkpoints = stack.get(f"/jobs/{trial['job_id']}/checkpoints").json()
        assert [c["step"] for c in checkpoints] == [trial["metric_step"]]
    assert asha["best"]["params"] == grid["best"]["params"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_cancelling_a_sweep_cancels_its_running_trial(stack):
    request = sweep_request(upload(stack, ROWS))
    request["base"]["training"]["max_steps"] = 100_000
    sweep = stack.post("/sweeps", json=request).json()
    job_id = sweep["trials"][0]["job_id"]
    deadline = time.monotonic() + 120
    while stack.get(f"/jobs/{job_id}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled = stack.post(f"/sweeps/{sweep['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["trials"][0]["status"] == "cancelling"
    while stack.get(f"/jobs/{job_id}").json()["status"] == "cancelling":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    final = stack.get(f"/sweeps/{sweep['id']}").json()
    assert [t["status"] for t in final["trials"]] == ["cancelled"]
