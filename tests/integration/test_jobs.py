"""Job submission, validation errors, idempotency, listing, events and the broker hand-off,
against real PostgreSQL + Redis and the embedded SQLite + filesystem broker."""

import json

import pytest
import redis

from tests.conftest import REDIS_URL
from tests.integration.conftest import make_spec


def queued_messages(backend, queue: str = "gpu") -> list[dict]:
    """The task messages waiting in the broker for `queue`, decoded."""
    if backend.broker_url:
        raw = redis.Redis.from_url(REDIS_URL).lrange(queue, 0, -1)
    else:
        folder = backend.data_dir / "broker" / "queue"
        raw = [path.read_bytes() for path in sorted(folder.glob(f"*.{queue}.msg"))]
    return [json.loads(message) for message in raw]


def test_post_job_stores_it_and_sends_a_task_to_its_queue(client, backend, dataset):
    response = client.post("/jobs", json=make_spec(dataset["id"], name="first"))
    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["name"] == "first"
    assert job["queue"] == "gpu"
    assert [a["attempt"] for a in job["attempts"]] == [1]
    assert job["spec"]["output_dir"] == f"job-{job['id']}"
    [message] = queued_messages(backend)
    assert message["headers"]["task"] == "traindock.run_job"
    assert message["headers"]["id"] == f"run-{job['id']}" or message["headers"]["id"].startswith("run-")
    shown = client.get(f"/jobs/{job['id']}").json()
    assert shown.pop("stream_position") == 1  # the job.queued event
    assert isinstance(job.pop("warnings"), list)  # only the submit's answer has them
    assert shown == job


def test_resources_queue_routes_the_task(client, backend, dataset):
    client.post("/jobs", json=make_spec(dataset["id"], resources={"queue": "a100"}))
    assert len(queued_messages(backend, "a100")) == 1
    assert queued_messages(backend, "gpu") == []


def test_document_aliases_are_stored_under_one_spelling(client, dataset):
    spec = make_spec(dataset["id"], data={"val_set_size": 0.2}, training={
        "evaluation_strategy": "steps", "eval_steps": 2, "optimizer": "adamw_torch",
        "lr_scheduler": "cosine", "micro_batch_size": 4, "warmup_ratio": 0.1, "save_safetensors": True,
        "save_steps": 4,
    })
    training = client.post("/jobs", json=spec).json()["spec"]["training"]
    assert training["eval_strategy"] == "steps"
    assert training["optim"] == "adamw_torch"
    assert training["lr_scheduler_type"] == "cosine"
    assert training["per_device_train_batch_size"] == 4
    assert training["warmup_steps"] == 0.1
    for alias in ("evaluation_strategy", "optimizer", "lr_scheduler", "micro_batch_size",
                  "warmup_ratio", "save_safetensors"):
        assert alias not in training


@pytest.mark.parametrize("change, loc, fragment", [
    ({"training": {"learning_rat": 1e-4}}, ["body", "training", "learning_rat"], "learning_rate"),
    ({"training": {"fp16": True, "bf16": True}}, ["body", "training"], "fp16"),
    ({"training": {"warmup_steps": 10, "warmup_ratio": 0.1}}, ["body", "training"], "warmup"),
    ({"training": {"save_safetensors": False}}, ["body", "training"], "safetensors"),
    ({"training": {"eval_strategy": "steps", "eval_steps": 2}}, ["body", "training", "eval_strategy"], "validation split"),
    ({"training": {"logging_steps": 2.5}}, ["body", "training", "logging_steps"], "whole number"),
    ({"training": {"push_to_hub": True}}, ["body", "training", "hub_model_id"], "hub_model_id"),
    ({"training": {"lr_scheduler_type": "triangular"}}, ["body", "training", "lr_scheduler_type"], "cosine"),
    ({"training": {"optim": "adam9000"}}, ["body", "training", "optim"], "adamw_torch"),
    ({"output_dir": "/etc/passwd"}, ["body", "output_dir"], "relative"),
    ({"output_dir": "../escape"}, ["body", "output_dir"], ".."),
    ({"dataset_id": 999}, ["body", "dataset_id"], "no dataset"),
    ({"data": {"val_set_size": 20}}, ["body", "data", "val_set_size"], "none to train on"),
    ({"data": {"format": "chat"}}, ["body", "data", "format"], "holds alpaca rows"),
    ({"output_dir": "job-12"}, ["body", "output_dir"], "reserved"),
    ({"base_model": "../../etc"}, ["body", "base_model"], "must not contain '..'"),
])
def test_invalid_specs_are_422_naming_the_field(client, backend, dataset, change, loc, fragment):
    response = client.post("/jobs", json={**make_spec(dataset["id"]), **change})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    matching = [e for e in errors if e["loc"][: len(loc)] == loc]
    assert matching, errors
    assert any(fragment in e["msg"] for e in matching), errors
    assert {"loc", "msg", "type"} <= set(matching[0])
    assert client.get("/jobs").json()["items"] == []
    assert queued_messages(backend) == []


def test_output_dir_belongs_to_one_job(client, dataset):
    assert client.post("/jobs", json=make_spec(dataset["id"], output_dir="mine")).status_code == 201
    again = client.post("/jobs", json=make_spec(dataset["id"], output_dir="mine"))
    assert again.status_code == 422
    assert again.json()["detail"][0]["loc"] == ["body", "output_dir"]
    assert "belongs to job" in again.json()["detail"][0]["msg"]


def test_idempotency_key_returns_the_first_job_or_409(client, backend, dataset):
    spec = make_spec(dataset["id"])
    headers = {"Idempotency-Key": "abc-123"}
    first = client.post("/jobs", json=spec, headers=headers)
    again = client.post("/jobs", json=spec, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    other = client.post("/jobs", json=make_spec(dataset["id"], name="other"), headers=headers)
    assert other.status_code == 409
    assert len(client.get("/jobs").json()["items"]) == 1
    assert len(queued_messages(backend)) == 1


def test_list_filters_by_status_and_paginates_newest_first(client, dataset):
    ids = [client.post("/jobs", json=make_spec(dataset["id"])).json()["id"] for _ in range(5)]
    client.post(f"/jobs/{ids[1]}/cancel")
    page = client.get("/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["items"]] == [ids[4], ids[3]]
    rest = client.get("/jobs", params={"limit": 10, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in rest["items"]] == [ids[2], ids[1], ids[0]]
    assert rest["next_cursor"] is None
    cancelled = client.get("/jobs", params={"status": "cancelled"}).json()["items"]
    assert [j["id"] for j in cancelled] == [ids[1]]
    both = client.get("/jobs", params=[("status", "cancelled"), ("status", "queued")]).json()["items"]
    assert len(both) == 5
    assert client.get("/jobs", params={"status": "bogus"}).status_code == 422


def test_every_state_change_is_an_event(client, dataset):
    job = client.post("/jobs", json=make_spec(dataset["id"])).json()
    client.post(f"/jobs/{job['id']}/cancel")
    events = client.get(f"/jobs/{job['id']}/events").json()["items"]
    changes = [(e["type"], e["data"]["from"], e["data"]["to"]) for e in events if e["type"].startswith("job.")]
    assert changes == [("job.queued", None, "queued"), ("job.cancelled", "queued", "cancelled")]
    first = client.get(f"/jobs/{job['id']}/events", params={"limit": 1}).json()
    assert len(first["items"]) == 1
    after = client.get(f"/jobs/{job['id']}/events", params={"cursor": first["next_cursor"]}).json()
    assert [e["id"] for e in first["items"] + after["items"]] == [e["id"] for e in events]


def test_cancel_queued_job_is_immediate_idempotent_and_409_when_finished(client, dataset):
    job = client.post("/jobs", json=make_spec(dataset["id"])).json()
    assert client.post(f"/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    again = client.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert client.get(f"/jobs/{job['id']}").json()["attempts"][0]["status"] == "cancelled"


def test_unknown_job_is_404_everywhere(client):
    for path in ("/jobs/77", "/jobs/77/events", "/jobs/77/metrics", "/jobs/77/checkpoints"):
        assert client.get(path).status_code == 404, path
    assert client.post("/jobs/77/cancel").status_code == 404


def test_validate_is_a_dry_run_with_estimates_and_warnings(client, backend, dataset):
    spec = make_spec(dataset["id"], data={"val_set_size": 0.25}, training={
        "max_steps": -1, "num_train_epochs": 1.5, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 16, "learning_rate": 1e-2, "warmup_ratio": 0.1,
    })
    report = client.post("/jobs/validate", json=spec).json()
    assert report["valid"] is True
    assert report["errors"] == []
    assert report["spec"]["training"]["warmup_steps"] == 0.1
    estimates = report["estimates"]
    assert (estimates["train_rows"], estimates["eval_rows"]) == (15, 5)
    assert estimates["effective_batch_size"] == 32
    warned = {w["field"] for w in report["warnings"]}
    assert {"training.learning_rate", "training.gradient_accumulation_steps"} <= warned
    assert client.get("/jobs").json()["items"] == []
    assert queued_messages(backend) == []

    bad = client.post("/jobs/validate", json={**spec, "trainig": {}}).json()
    assert bad["valid"] is False
    assert "training" in bad["errors"][0]["msg"]


def test_post_job_returns_the_warnings_validate_shows(client, dataset):
    """A client that submits directly (no dry run first) sees the same advice."""
    spec = make_spec(dataset["id"], training={"gradient_accumulation_steps": 16, "learning_rate": 1e-2})
    shown = client.post("/jobs/validate", json=spec).json()["warnings"]
    assert {"training.learning_rate", "training.gradient_accumulation_steps"} <= {w["field"] for w in shown}
    submitted = client.post("/jobs", json=spec)
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["warnings"] == shown and submitted.json()["status"] == "queued"
    replayed = client.post("/jobs", json=spec, headers={"Idempotency-Key": "k"})
    assert client.post("/jobs", json=spec, headers={"Idempotency-Key": "k"}).json()["warnings"] == shown
    assert replayed.json()["warnings"] == shown
    quiet = client.post("/jobs", json=make_spec(dataset["id"], training={"learning_rate": 1e-4}))
    assert "warnings" in quiet.json() and "training.learning_rate" not in {w["field"] for w in quiet.json()["warnings"]}
    assert "warnings" not in client.get(f"/jobs/{submitted.json()['id']}").json()


def test_validate_estimates_memory_from_the_models_config_json(client, dataset):
    from tests.unit.test_jobspec_memory import LLAMA_2_7B
    from traindock.settings import get_settings

    folder = get_settings().effective_model_roots[0] / "llama-7b"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(LLAMA_2_7B))
    spec = make_spec(dataset["id"], base_model="llama-7b", method="full", resources={"gpu_memory_gb": 40})
    memory = client.post("/jobs/validate", json=spec).json()["estimates"]["memory"]
    assert memory["parameters"]["total"] == 6_738_415_616
    assert set(memory["bytes"]) == {"weights", "trainable_parameters", "gradients", "optimizer_state",
                                    "activations", "total"}
    assert memory["peak_gib"] > 40 and "resources.gpu_memory_gb 40" in memory["suggestion"]

    hub = client.post("/jobs/validate", json=make_spec(dataset["id"])).json()["estimates"]["memory"]
    assert "hub id" in hub["unavailable"]


def test_schema_and_health(client):
    schema = client.get("/schema/job-spec").json()
    assert "training" in schema["properties"]
    assert client.get("/health").json() == {"status": "ok", "database": "ok", "broker": "ok", "storage": "ok",
                                            "store": "the local data folder"}


def test_concurrent_resumes_and_cancels_change_the_job_once(client, backend, dataset):
    """Every state change takes the job's row lock: of four resumes at once one makes an attempt."""
    from concurrent.futures import ThreadPoolExecutor

    from db.checkpoints import record_checkpoint
    from db.engine import session_scope
    from db.runs import latest_run

    job = client.post("/jobs", json=make_spec(dataset["id"])).json()
    with ThreadPoolExecutor(4) as pool:
        cancels = list(pool.map(lambda _: client.post(f"/jobs/{job['id']}/cancel").json()["status"], range(4)))
    assert cancels == ["cancelled"] * 4
    folder = backend.data_dir / "checkpoint-4"
    folder.mkdir()
    (folder / "trainer_state.json").write_text("{}")
    with session_scope() as session:
        record_checkpoint(session, job["id"], latest_run(session, job["id"]).id, 4, str(folder), None)
    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(lambda _: client.post(f"/jobs/{job['id']}/resume").status_code, range(4)))
    assert codes == [202, 409, 409, 409]
    after = client.get(f"/jobs/{job['id']}").json()
    assert [(a["attempt"], a["status"]) for a in after["attempts"]] == [(1, "cancelled"), (2, "queued")]
    assert len(queued_messages(backend)) == 2


def test_the_list_leaves_specs_out_unless_asked(client, dataset):
    job = client.post("/jobs", json=make_spec(dataset["id"], name="listed")).json()
    listed = client.get("/jobs").json()["items"]
    assert [(j["id"], j["name"], j["spec"]) for j in listed] == [(job["id"], "listed", None)]
    assert listed[0]["attempts"] == job["attempts"]
    full = client.get("/jobs", params={"include": "spec"}).json()["items"]
    assert full[0]["spec"] == job["spec"] == client.get(f"/jobs/{job['id']}").json()["spec"]
    assert client.get("/jobs", params={"include": "everything"}).status_code == 422
