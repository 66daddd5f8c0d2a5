"""The unchanged `openai` client against /v1 on a real uvicorn, on both backends: files,
fine-tuning jobs (create, list, retrieve, cancel, pause, resume, events, checkpoints) and models."""

import json
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from api.app import create_app
from db import lifecycle
from db.checkpoints import record_checkpoint
from db.engine import session_scope
from db.jobs import get_job, set_result
from db.metrics import record_metric_points
from db.runs import latest_run
from db.status import RunStatus
from tests.conftest import reset_caches
from tests.integration.conftest import ALPACA_ROWS, authorized, issue, jsonl
from tests.integration.openai_server import CountingApp, serve

CHAT_ROWS = [{"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "hello"}]}
             for i in range(4)]


@pytest.fixture
def models_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "models"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 16, "vocab_size": 32,
        "tie_word_embeddings": False,
    }))
    monkeypatch.setenv("TRAINDOCK_MODEL_ROOTS", json.dumps([str(root)]))
    reset_caches()
    return root


@pytest.fixture
def server(backend, models_root):
    app = CountingApp(create_app())
    key = issue("acme")
    with serve(app) as url:
        app.url, app.key = url, key
        yield app


@pytest.fixture
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=2)


def native(server, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=authorized(server.key), **kwargs)


def upload(client: OpenAI, rows=ALPACA_ROWS, name: str = "train.jsonl"):
    return client.files.create(file=(name, jsonl(rows)), purpose="fine-tune")


def create_job(client: OpenAI, training_file: str, **kwargs):
    return client.fine_tuning.jobs.create(model="tiny", training_file=training_file, **kwargs)


def succeed(job_id: int) -> None:
    """Through the lifecycle, as a worker would: claimed, trained, succeeded with a final model."""
    with session_scope() as session:
        run = latest_run(session, job_id)
        lifecycle.claim_run(session, run.id, "test-worker")
        set_result(session, job_id, {"final_model_path": "final", "global_step": 4})
        lifecycle.finish_run(session, run.id, RunStatus.SUCCEEDED, "succeeded")


def number(openai_id: str) -> int:
    return int(openai_id.rsplit("-", 1)[1])


# ---- Files ------------------------------------------------------------------------------------

def test_files_upload_retrieve_list_content_delete(client, backend):
    content = jsonl(ALPACA_ROWS)
    created = client.files.create(file=("train.jsonl", content), purpose="fine-tune")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.purpose, created.status, created.filename, created.bytes) == (
        "fine-tune", "processed", "train.jsonl", len(content))
    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).content == content
    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    with pytest.raises(openai.NotFoundError) as missing:
        client.files.retrieve(created.id)
    assert missing.value.body["code"] == "file_not_found"
    assert not (backend.data_dir / "datasets" / f"{number(created.id)}.jsonl").exists()


def test_files_list_pages_with_after_newest_first(client):
    ids = [upload(client, [{"text": f"row {i}"}]).id for i in range(5)]
    first = client.files.list(limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2] and first.has_more
    assert [f.id for f in client.files.list(limit=2)] == ids[::-1]  # auto-paging follows `after`
    assert [f.id for f in client.files.list(limit=3, order="asc")] == ids
    assert client.files.list(purpose="assistants").data == []


def test_a_bad_file_or_purpose_is_a_400_naming_the_line(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.create(file=("x.jsonl", b'{"text": "ok"}\n{"text": \n'), purpose="fine-tune")
    assert "line 2" in bad.value.message and bad.value.body["param"] == "file"
    with pytest.raises(openai.BadRequestError) as purpose:
        client.files.create(file=("x.jsonl", jsonl(ALPACA_ROWS)), purpose="assistants")
    assert purpose.value.body["param"] == "purpose"
    assert client.files.list().data == []


def test_deleting_a_file_a_queued_job_uses_is_409_and_not_retried(client, server):
    file = upload(client)
    create_job(client, file.id)
    with pytest.raises(openai.ConflictError):
        client.files.delete(file.id)
    assert server.requests[("DELETE", f"/v1/files/{file.id}")] == 1


# ---- Jobs -------------------------------------------------------------------------------------

def test_create_maps_hyperparameters_seed_suffix_metadata_and_extra_body(client, server):
    train, valid = upload(client), upload(client, name="valid.jsonl")
    job = create_job(
        client, train.id, validation_file=valid.id, suffix="support", seed=7, metadata={"team": "a"},
        hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5},
        extra_body={"lora": {"r": 4}, "data": {"cutoff_len": 128}},
    )
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert (job.status, job.model, job.training_file, job.validation_file) == ("queued", "tiny", train.id, valid.id)
    assert (job.seed, job.metadata, job.user_provided_suffix) == (7, {"team": "a"}, "support")
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size) == (2, 4)
    assert job.hyperparameters.learning_rate_multiplier == pytest.approx(0.5)
    assert job.fine_tuned_model is None and isinstance(job.created_at, int)
    spec = native(server, "GET", f"/jobs/{number(job.id)}").json()["spec"]
    assert spec["training"]["num_train_epochs"] == 2
    assert spec["training"]["per_device_train_batch_size"] == 4
    assert spec["training"]["learning_rate"] == pytest.approx(1e-4)  # 0.5 x the LoRA base 2e-4
    assert spec["training"]["seed"] == 7 and spec["training"]["eval_strategy"] == "epoch"
    assert (spec["validation_dataset_id"], spec["lora"]["r"], spec["data"]["cutoff_len"]) == (number(valid.id), 4, 128)
    assert client.fine_tuning.jobs.retrieve(job.id) == job


def test_auto_hyperparameters_and_method_supervised(client, server):
    file = upload(client)
    job = create_job(client, file.id, method={"type": "supervised", "supervised": {
        "hyperparameters": {"n_epochs": "auto", "batch_size": 2}}})
    training = native(server, "GET", f"/jobs/{number(job.id)}").json()["spec"]["training"]
    assert (training["num_train_epochs"], training["per_device_train_batch_size"]) == (3, 2)
    assert training["learning_rate"] == pytest.approx(2e-4)
    assert job.method.type == "supervised"


def test_method_dpo_trains_objective_dpo_on_an_openai_preference_file(client, server):
    rows = [{"input": {"messages": [{"role": "user", "content": f"q {i}"}]},
             "preferred_output": [{"role": "assistant", "content": "yes"}],
             "non_preferred_output": [{"role": "assistant", "content": "no"}]} for i in range(4)]
    file = upload(client, rows)
    job = create_job(client, file.id, method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.25,
                                                                                       "batch_size": 2}}})
    spec = native(server, "GET", f"/jobs/{number(job.id)}").json()["spec"]
    assert (spec["objective"], spec["preference"]["beta"], spec["training"]["per_device_train_batch_size"]) == (
        "dpo", 0.25, 2)
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.25
    with pytest.raises(openai.BadRequestError) as bad:  # a preference file is no supervised training set
        create_job(client, file.id)
    assert bad.value.body["param"] == "dataset_id" and "detected format 'openai_dpo'" in bad.value.message


@pytest.mark.parametrize("kwargs, param, fragment", [
    ({"method": {"type": "dpo"}}, "dataset_id", "objective 'dpo' trains on preference pairs"),
    ({"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}}, "method.dpo.hyperparameters.beta",
     "greater than"),
    ({"method": {"type": "reinforcement"}}, "method.type", "reinforcement"),
    ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs", "greater than or equal"),
    ({"extra_body": {"training": {"learning_rat": 1}}}, "training.learning_rat", "learning_rate"),
    ({"model": "../../etc"}, "base_model", "'..'"),
    ({"training_file": "file-999"}, "training_file", "no file"),
    ({"validation_file": "nonsense"}, "validation_file", "no file"),
])
def test_bad_create_requests_are_400_naming_the_param(client, kwargs, param, fragment):
    file = upload(client)
    arguments = {"model": "tiny", "training_file": file.id, **kwargs}
    with pytest.raises(openai.BadRequestError) as bad:
        client.fine_tuning.jobs.create(**arguments)
    assert bad.value.body["param"] == param
    assert fragment in bad.value.message
    assert client.fine_tuning.jobs.list().data == []


def test_list_pages_newest_first_and_unknown_ids_are_404(client):
    file = upload(client)
    ids = [create_job(client, file.id).id for _ in range(3)]
    first = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in first.data] == ids[::-1][:2] and first.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(limit=2)] == ids[::-1]
    assert client.fine_tuning.jobs.list(after=ids[0]).data == []
    tagged = create_job(client, file.id, metadata={"team": "a", "run": "7"}).id
    create_job(client, file.id, metadata={"team": "b"})
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "a"})] == [tagged]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "a", "run": "8"})] == []
    for unknown in ("ftjob-999", "ftjob-x", "12"):
        with pytest.raises(openai.NotFoundError):
            client.fine_tuning.jobs.retrieve(unknown)


def test_another_tenants_job_and_file_are_404(client, server):
    file = upload(client)
    job = create_job(client, file.id)
    other = OpenAI(base_url=f"{server.url}/v1", api_key=issue("globex"), max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.retrieve(job.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(file.id)
    assert other.fine_tuning.jobs.list().data == []


def test_cancel_pause_resume_and_a_refusal_is_409_without_retries(client, server):
    file = upload(client)
    job = create_job(client, file.id)
    assert client.fine_tuning.jobs.pause(job.id).status == "paused"
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"  # idempotent
    with pytest.raises(openai.ConflictError) as refused:
        client.fine_tuning.jobs.pause(job.id)
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert refused.value.body["type"] == "conflict_error"
    assert server.requests[("POST", f"/v1/fine_tuning/jobs/{job.id}/pause")] == 2  # one pause, one refusal
    statuses = [e["data"]["to"] for e in native(server, "GET", f"/jobs/{number(job.id)}/events").json()["items"]]
    assert statuses == ["queued", "paused", "queued", "cancelled"]


def test_events_newest_first_with_metrics_and_paging(client, server):
    file = upload(client)
    job = create_job(client, file.id)
    job_id = number(job.id)
    with session_scope() as session:
        run = latest_run(session, job_id)
        lifecycle.claim_run(session, run.id, "test-worker")
        record_metric_points(session, job_id, run.id, [(1, 0.5, {"loss": 2.5, "learning_rate": 1e-4}),
                                                       (2, 1.0, {"loss": 2.0})])
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=2))  # pages of two, by `after`
    assert [e.type for e in events] == ["metrics", "metrics", "message", "message"]
    assert [e.data["step"] for e in events[:2]] == [2, 1]
    assert (events[0].data["train_loss"], events[1].data["train_loss"]) == (2.0, 2.5)
    assert [e.data["traindock_type"] for e in events[2:]] == ["job.running", "job.queued"]
    assert all(e.object == "fine_tuning.job.event" and e.level == "info" for e in events)
    ids = [number(e.id) for e in events]
    assert ids == sorted(ids, reverse=True)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "running"
    native_types = [e["type"] for e in native(server, "GET", f"/jobs/{job_id}/events").json()["items"]]
    assert native_types == ["job.queued", "job.running"]  # the points are GET /jobs/{id}/metrics's


def test_checkpoints_latest_first_with_paging(client):
    file = upload(client)
    job = create_job(client, file.id, suffix="s")
    job_id = number(job.id)
    with session_scope() as session:
        run = latest_run(session, job_id)
        for step in (2, 4, 6):
            record_checkpoint(session, job_id, run.id, step, f"checkpoint-{step}", {"loss": 1.0 / step, "eval_loss": 2.0})
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id, limit=2))
    assert [c.step_number for c in checkpoints] == [6, 4, 2]
    latest = checkpoints[0]
    assert latest.object == "fine_tuning.job.checkpoint" and latest.fine_tuning_job_id == job.id
    assert latest.metrics.train_loss == pytest.approx(1 / 6) and latest.metrics.valid_loss == 2.0
    assert latest.fine_tuned_model_checkpoint == f"ft:tiny:s:{job.id}:ckpt-step-6"


def test_a_job_starts_from_a_checkpoint_model_of_another(client, server, backend):
    file = upload(client)
    job = create_job(client, file.id, suffix="s", extra_body={"lora": {"r": 4}})
    job_id = number(job.id)
    folder = backend.data_dir / "jobs" / "tenant-1" / f"job-{job_id}" / "checkpoint-3"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    with session_scope() as session:
        run = latest_run(session, job_id)
        lifecycle.claim_run(session, run.id, "test-worker")
        record_checkpoint(session, job_id, run.id, 3, str(folder), {"loss": 1.0})
    [checkpoint] = client.fine_tuning.jobs.checkpoints.list(job.id).data
    follow = client.fine_tuning.jobs.create(model=checkpoint.fine_tuned_model_checkpoint, training_file=file.id)
    spec = native(server, "GET", f"/jobs/{number(follow.id)}").json()["spec"]
    assert spec["resume_from_checkpoint"] == {"job_id": job_id, "step": 3}
    assert (spec["base_model"], spec["lora"]["r"], spec.get("init_from_job_id")) == ("tiny", 4, None)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.create(model=f"ft:tiny:s:{job.id}:ckpt-step-4", training_file=file.id)


# ---- Models -----------------------------------------------------------------------------------

def test_models_lists_base_and_fine_tuned_and_a_job_starts_from_one(client, server, backend):
    file = upload(client)
    job = create_job(client, file.id, suffix="bot", extra_body={"lora": {"r": 4}})
    succeed(number(job.id))
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert (done.status, done.fine_tuned_model) == ("succeeded", f"ft:tiny:bot:{job.id}")

    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"tiny", done.fine_tuned_model}
    base = client.models.retrieve("tiny")
    assert (base.object, base.owned_by, base.architecture) == ("model", "traindock", "LlamaForCausalLM")
    assert base.parameters == 1 * (8 * 2 * 4 * 2 + 8 * 1 * 4 * 2 + 3 * 8 * 16 + 2 * 8) + 32 * 8 * 2 + 8
    assert client.models.retrieve(done.fine_tuned_model).owned_by.startswith("tenant-")

    # A job from the fine-tuned model trains its adapter further: same base, method and LoRA settings.
    follow = client.fine_tuning.jobs.create(model=done.fine_tuned_model, training_file=file.id)
    assert follow.model == done.fine_tuned_model
    spec = native(server, "GET", f"/jobs/{number(follow.id)}").json()["spec"]
    assert (spec["base_model"], spec["init_from_job_id"], spec["lora"]["r"]) == ("tiny", number(job.id), 4)

    for unknown in ("nope", "ft:tiny:bot:ftjob-999", f"ft:tiny:other:{job.id}"):
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve(unknown)
    with pytest.raises(openai.PermissionDeniedError):
        client.models.delete("tiny")


def test_deleting_a_fine_tuned_model_deletes_its_job_and_outputs(client, backend):
    file = upload(client)
    job = create_job(client, file.id)
    job_id = number(job.id)
    succeed(job_id)
    model = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    outputs = backend.data_dir / "jobs" / "tenant-1" / f"job-{job_id}"
    (outputs / "final").mkdir(parents=True)
    (outputs / "final" / "adapter_model.safetensors").write_bytes(b"x")
    assert client.models.delete(model).deleted is True
    assert not outputs.exists()
    with session_scope() as session:
        assert get_job(session, job_id) is None
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(model)


# ---- Errors -----------------------------------------------------------------------------------

def test_v1_errors_use_the_envelope_and_the_native_api_keeps_its_shape(client, server):
    v1 = native(server, "GET", "/v1/fine_tuning/jobs/ftjob-5")
    assert v1.status_code == 404
    assert set(v1.json()["error"]) == {"message", "type", "param", "code"}
    assert native(server, "GET", "/jobs/5").json() == {"detail": "job 5 not found"}
    bad_key = OpenAI(base_url=f"{server.url}/v1", api_key="td_0_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        bad_key.models.list()
    assert refused.value.body["code"] == "invalid_api_key"


def test_an_upload_over_the_limit_is_413_in_the_envelope(client, monkeypatch):
    monkeypatch.setenv("TRAINDOCK_MAX_UPLOAD_BYTES", "100")
    from traindock.settings import get_settings

    get_settings.cache_clear()
    with pytest.raises(openai.APIStatusError) as refused:
        client.with_options(max_retries=0).files.create(file=("x.jsonl", jsonl([{"text": "x" * 50}] * 4)),
                                                        purpose="fine-tune")
    assert refused.value.status_code == 413
    assert "larger than the limit" in refused.value.body["message"]
