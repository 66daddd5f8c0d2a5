"""The worker registry as the API reads it: GET /workers for admins and tenants, and the fit
checks of POST /jobs/validate and POST /jobs against the queue's live workers. Workers are
registered here through db/workers.py as worker/registry.py writes them (tests/e2e/test_workers.py
has a real worker do it)."""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from db.engine import session_scope
from db.lifecycle import claim_run
from db.models import Worker
from db.runs import latest_run
from db.workers import mark_worker_stopped, register_worker
from tests.conftest import reset_caches
from tests.integration.conftest import authorized, issue, make_spec

H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85_024_112_640, "compute_capability": "9.0", "bf16": True}
T4 = {"index": 0, "name": "Tesla T4", "memory_bytes": 15_828_320_256, "compute_capability": "7.5", "bf16": False}
VERSIONS = {"torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.2", "accelerate": "1.15.0", "bitsandbytes": None}


def register(name: str, queues=("gpu",), gpus=(), integrations=("tensorboard",), bitsandbytes=None, pid=100,
             gpu_ids=None) -> None:
    with session_scope() as session:
        register_worker(session, {"name": name, "host": f"host-of-{name}", "pid": pid, "queues": list(queues),
                                  "gpus": list(gpus), "integrations": list(integrations),
                                  "gpu_ids": [str(gpu["index"]) for gpu in gpus] if gpu_ids is None else gpu_ids,
                                  "versions": {**VERSIONS, "bitsandbytes": bitsandbytes}})


def age(name: str, seconds: float) -> None:
    with session_scope() as session:
        worker = session.scalar(select(Worker).where(Worker.name == name))
        worker.heartbeat_at -= timedelta(seconds=seconds)


@pytest.fixture
def admin(backend, monkeypatch):
    monkeypatch.setenv("TRAINDOCK_ADMIN_TENANTS", '["ops"]')
    reset_caches()
    with TestClient(create_app(), headers=authorized(issue("ops"))) as client:
        yield client


def validate(client, dataset_id: int, **overrides) -> dict:
    response = client.post("/jobs/validate", json=make_spec(dataset_id, **overrides))
    assert response.status_code == 200, response.text
    return response.json()


def error_at(report: dict, *loc: str) -> str:
    [error] = [e for e in report["errors"] if tuple(e["loc"]) == ("body", *loc)]
    return error["msg"]


def warning_at(report: dict, field: str) -> str:
    """The warnings about `field` (the tuning advice may have one too), one per line."""
    found = [w["msg"] for w in report["warnings"] if w["field"] == field]
    assert found, report["warnings"]
    return "\n".join(found)


def test_admins_see_every_worker_and_tenants_only_each_queues_capacity(admin, client, dataset):
    register("gpu-1@a", queues=["gpu"], gpus=[H100, {**H100, "index": 1}], bitsandbytes="0.50.2")
    register("cpu-1@b", queues=["gpu", "cpu"])
    register("old@c", queues=["old"])
    age("old@c", 3600)  # not seen for an hour: not live
    register("gone@d", queues=["gone"])
    with session_scope() as session:
        mark_worker_stopped(session, "gone@d", 100)
    job = client.post("/jobs", json=make_spec(dataset["id"])).json()
    with session_scope() as session:
        claim_run(session, latest_run(session, job["id"]).id, "gpu-1@a")

    seen = admin.get("/workers").json()
    assert [q["queue"] for q in seen["queues"]] == ["cpu", "gpu"]  # live workers' queues only
    gpu = seen["queues"][1]
    assert gpu["live_workers"] == 2 and gpu["integrations"] == ["tensorboard"] and gpu["largest_gpu_set"] == 2
    assert gpu["gpus"] == [{"name": H100["name"], "memory_bytes": H100["memory_bytes"], "bf16": True, "count": 2}]
    workers = {w["name"]: w for w in seen["workers"]}
    assert set(workers) == {"gpu-1@a", "cpu-1@b", "old@c", "gone@d"}
    assert workers["gpu-1@a"]["live"] and workers["gpu-1@a"]["running_job_ids"] == [job["id"]]
    assert workers["gpu-1@a"]["host"] == "host-of-gpu-1@a" and workers["gpu-1@a"]["versions"]["bitsandbytes"] == "0.50.2"
    assert workers["gpu-1@a"]["heartbeat_age_s"] < 30
    assert not workers["old@c"]["live"] and workers["old@c"]["heartbeat_age_s"] >= 3600
    assert not workers["gone@d"]["live"] and workers["gone@d"]["stopped_at"] is not None

    tenant_view = client.get("/workers").json()
    assert tenant_view["workers"] is None and tenant_view["queues"] == seen["queues"]
    assert "host-of" not in str(tenant_view) and "gpu-1@a" not in str(tenant_view)


def test_a_queue_without_live_workers_warns_and_never_refuses(client, dataset):
    register("elsewhere@a", queues=["other"])
    register("stale@b", queues=["gpu"])
    age("stale@b", 3600)
    spec = {"method": "qlora", "training": {"bf16": True, "report_to": "wandb"}}

    report = validate(client, dataset["id"], **spec)

    assert report["valid"], report["errors"]
    assert "no live worker on queue 'gpu'" in warning_at(report, "resources.queue")
    assert "CUDA GPU" in warning_at(report, "method")
    assert client.post("/jobs", json=make_spec(dataset["id"], **spec)).status_code == 201


def test_what_no_live_worker_of_the_queue_can_run_is_422_naming_the_field(client, dataset):
    register("cpu@a", queues=["gpu"])
    register("t4@b", queues=["gpu"], gpus=[T4])  # a GPU, but without bf16 and without bitsandbytes

    report = validate(client, dataset["id"], method="qlora", training={"bf16": True, "report_to": ["tensorboard", "wandb"]})

    assert not report["valid"]
    assert "'wandb'" in error_at(report, "training", "report_to") and "tensorboard" in error_at(report, "training", "report_to")
    assert "Tesla T4" in error_at(report, "training", "bf16") and "bf16_unsupported" in error_at(report, "training", "bf16")
    assert "bitsandbytes" in error_at(report, "method")
    response = client.post("/jobs", json=make_spec(dataset["id"], training={"bf16": True}))
    assert response.status_code == 422
    assert [tuple(e["loc"]) for e in response.json()["detail"]] == [("body", "training", "bf16")]


def test_a_cpu_only_queue_refuses_qlora_and_bf16_and_warns_that_fp16_does_nothing(client, dataset):
    register("cpu@a", queues=["gpu"])

    assert "none has a CUDA GPU" in error_at(validate(client, dataset["id"], method="qlora", training={"fp16": True}), "method")
    assert "CPU only" in error_at(validate(client, dataset["id"], training={"bf16": True}), "training", "bf16")
    fp16 = validate(client, dataset["id"], training={"fp16": True})
    assert fp16["valid"] and "trains in fp32" in warning_at(fp16, "training.fp16")
    assert client.post("/jobs", json=make_spec(dataset["id"], training={"fp16": True})).status_code == 201


def test_when_only_some_workers_can_run_it_the_job_is_accepted_with_a_warning(client, dataset):
    register("h100@a", queues=["gpu"], gpus=[H100], bitsandbytes="0.50.2", integrations=["tensorboard", "wandb"])
    register("cpu@b", queues=["gpu"])

    report = validate(client, dataset["id"], method="qlora", training={"bf16": True, "report_to": "wandb"})

    assert report["valid"], report["errors"]
    assert "1 of the 2 live workers" in warning_at(report, "training.report_to")
    assert "1 of the 2 live workers" in warning_at(report, "training.bf16")
    assert "1 of the 2 live workers" in warning_at(report, "method")
    assert client.post("/jobs", json=make_spec(dataset["id"], method="qlora", training={"bf16": True})).status_code == 201


def test_a_restarted_worker_registers_afresh_and_a_stopped_one_stays_stopped(client):
    register("w@a", pid=1)
    with session_scope() as session:
        mark_worker_stopped(session, "w@a", 1)
    assert client.get("/workers").json()["queues"] == []
    register("w@a", pid=2, gpus=[H100])  # the same name, a new process
    [queue] = client.get("/workers").json()["queues"]
    assert queue["live_workers"] == 1 and queue["gpus"][0]["name"] == H100["name"]


def test_without_gpu_memory_gb_the_estimate_is_compared_with_the_queues_smallest_live_gpu(client, dataset):
    import json

    from tests.unit.test_jobspec_memory import LLAMA_2_7B
    from traindock.settings import get_settings

    folder = get_settings().effective_model_roots[0] / "llama-7b"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(LLAMA_2_7B))
    register("h100@a", gpus=[H100], bitsandbytes="0.50.2")
    register("t4@b", gpus=[T4], bitsandbytes="0.50.2")

    def memory(**overrides) -> dict:
        return validate(client, dataset["id"], base_model="llama-7b", data={"cutoff_len": 1024},
                        training={"fp16": True, "per_device_train_batch_size": 1}, **overrides)["estimates"]["memory"]

    lora = memory()  # 13.5 GB of fp16 weights and about 7 GB of activations: more than a T4 holds
    assert "Tesla T4" in lora["compared_with"] and "15.8 GB" in lora["compared_with"]
    assert "exceeds the smallest live GPU of queue 'gpu' (Tesla T4) 15.8;" in lora["suggestion"]
    assert "use method 'qlora'" in lora["suggestion"]
    assert "suggestion" not in memory(method="qlora")  # 4.5 GB of weights instead of 13.5
    hinted = memory(resources={"gpu_memory_gb": 80})  # the spec's own figure wins
    assert "compared_with" not in hinted and "suggestion" not in hinted


def test_more_gpus_than_any_live_worker_of_the_queue_has_is_422_and_fewer_than_some_a_warning(client, dataset):
    register("two@a", queues=["gpu"], gpu_ids=["0", "1"])  # a CPU machine's ids count as well
    register("one@b", queues=["gpu"], gpus=[H100])

    report = validate(client, dataset["id"], resources={"gpus": 4})
    assert "needs 4 GPUs" in error_at(report, "resources", "gpus") and "at most 2" in error_at(report, "resources", "gpus")
    assert client.post("/jobs", json=make_spec(dataset["id"], resources={"gpus": 4})).status_code == 422

    two = validate(client, dataset["id"], resources={"gpus": 2})
    assert two["valid"] and "1 of the 2 live workers" in warning_at(two, "resources.gpus")
    assert not [w for w in validate(client, dataset["id"])["warnings"] if w["field"] == "resources.gpus"]
