"""Downloads of the final model and checkpoints (streamed tars), attempt logs, the model list,
deleting finished jobs, and no server path in any answer; on both backends."""

import json
import struct

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.archive import CHUNK, tar_stream
from db import lifecycle
from db.checkpoints import record_checkpoint
from db.engine import session_scope
from db.jobs import set_result
from db.runs import latest_run
from db.status import RunStatus
from tests.conftest import reset_caches
from tests.integration.archives import archive_files, folder_files
from tests.integration.conftest import authorized, issue, make_spec

BIG = 3 * CHUNK + 123  # more than one chunk, not a whole number of tar blocks


@pytest.fixture
def models_root(tmp_path, monkeypatch):
    root = tmp_path / "models"
    folder = root / "org" / "small"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    header = json.dumps({"a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
                         "b": {"dtype": "F32", "shape": [5], "data_offsets": [48, 68]},
                         "__metadata__": {"format": "pt"}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 68)
    (root / "not-a-model").mkdir()
    monkeypatch.setenv("TRAINDOCK_MODEL_ROOTS", json.dumps([str(root)]))
    reset_caches()
    return root


@pytest.fixture
def client(backend, models_root):
    with TestClient(create_app(), headers=authorized(issue("acme"))) as test_client:
        yield test_client


@pytest.fixture
def trained(client, backend, dataset):
    """A job that succeeded with a final model and a checkpoint, as a worker leaves them."""
    job = client.post("/jobs", json=make_spec(dataset["id"], base_model="org/small")).json()
    output = backend.data_dir / "jobs" / "tenant-1" / f"job-{job['id']}"
    final, checkpoint = output / "final", output / "checkpoint-4"
    (final / "nested").mkdir(parents=True)
    (final / "adapter_model.safetensors").write_bytes(bytes(range(256)) * (BIG // 256) + b"tail")
    (final / "nested" / "tokenizer.json").write_text('{"x": 1}')
    (final / "empty").write_bytes(b"")
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text("{}")
    (checkpoint / "optimizer.pt").write_bytes(b"\1" * 1000)
    logs = backend.data_dir / "logs" / f"job-{job['id']}"
    logs.mkdir(parents=True)
    (logs / "attempt-1.log").write_text("step 1\nstep 2\n")
    with session_scope() as session:
        run = latest_run(session, job["id"])
        lifecycle.claim_run(session, run.id, "test-worker")
        record_checkpoint(session, job["id"], run.id, 4, str(checkpoint), {"loss": 1.0})
        set_result(session, job["id"], {"final_model_path": str(final), "best_checkpoint": str(checkpoint)})
        lifecycle.finish_run(session, run.id, RunStatus.SUCCEEDED, "succeeded")
    job.update(output=output, final=final, checkpoint=checkpoint, logs=logs)
    return job


def test_final_model_and_checkpoint_download_as_tars_equal_to_their_folders(client, trained):
    job = client.get(f"/jobs/{trained['id']}").json()
    response = client.get(job["final_model_download"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-tar"
    assert archive_files(response.content) == folder_files(trained["final"])
    [checkpoint] = client.get(f"/jobs/{trained['id']}/checkpoints").json()
    response = client.get(checkpoint["download"])
    assert archive_files(response.content) == folder_files(trained["checkpoint"])
    assert client.get(f"/jobs/{trained['id']}/checkpoints/8/download").status_code == 404


def test_the_tar_is_streamed_in_bounded_chunks(trained):
    chunks = list(tar_stream(trained["final"], "final"))
    assert max(len(chunk) for chunk in chunks) <= CHUNK
    assert archive_files(b"".join(chunks)) == folder_files(trained["final"])


def test_links_inside_the_folder_are_left_out(trained, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("server file")
    (trained["final"] / "link").symlink_to(secret)
    assert "link" not in archive_files(b"".join(tar_stream(trained["final"], "final")))


def test_answers_name_folders_relative_to_the_job_never_server_paths(client, backend, trained):
    job = client.get(f"/jobs/{trained['id']}").json()
    assert job["result"]["final_model_path"] == "final"
    assert job["result"]["best_checkpoint"] == "checkpoint-4"
    [checkpoint] = client.get(f"/jobs/{trained['id']}/checkpoints").json()
    assert checkpoint["path"] == "checkpoint-4"
    for path in (f"/jobs/{trained['id']}", "/jobs", f"/jobs/{trained['id']}/checkpoints",
                 f"/jobs/{trained['id']}/events", "/models", "/datasets"):
        response = client.get(path)
        assert response.status_code == 200
        assert str(backend.data_dir) not in response.text, path


def test_attempt_logs(client, trained):
    assert client.get(f"/jobs/{trained['id']}/logs", params={"attempt": 1}).text == "step 1\nstep 2\n"
    assert client.get(f"/jobs/{trained['id']}/logs").text == "step 1\nstep 2\n"  # the latest attempt
    assert client.get(f"/jobs/{trained['id']}/logs", params={"offset": 7}).text == "step 2\n"  # following it
    assert client.get(f"/jobs/{trained['id']}/logs", params={"offset": 99}).text == ""
    assert client.get(f"/jobs/{trained['id']}/logs", params={"attempt": 2}).status_code == 404


def test_models_lists_base_models_and_the_tenants_fine_tuned_ones(client, trained):
    models = client.get("/models").json()
    assert models["base"] == [{"name": "org/small", "architecture": "LlamaForCausalLM", "parameters": 17}]
    [tuned] = models["fine_tuned"]
    assert (tuned["job_id"], tuned["base_model"], tuned["method"]) == (trained["id"], "org/small", "lora")
    assert tuned["download"] == f"/jobs/{trained['id']}/artifacts/final"


def test_another_tenant_sees_none_of_it(client, trained):
    other = {"Authorization": f"Bearer {issue('globex')}"}
    for path in (f"/jobs/{trained['id']}/artifacts/final", f"/jobs/{trained['id']}/checkpoints/4/download",
                 f"/jobs/{trained['id']}/logs"):
        assert client.get(path, headers=other).status_code == 404
    assert client.delete(f"/jobs/{trained['id']}", headers=other).status_code == 404
    assert client.get("/models", headers=other).json()["fine_tuned"] == []


def test_delete_is_409_while_active_then_removes_the_job_and_its_folders(client, dataset, trained):
    queued = client.post("/jobs", json=make_spec(dataset["id"])).json()
    assert client.delete(f"/jobs/{queued['id']}").status_code == 409
    assert client.get(f"/jobs/{queued['id']}").json()["status"] == "queued"

    assert client.delete(f"/jobs/{trained['id']}").status_code == 204
    assert not trained["output"].exists() and not trained["logs"].exists()
    assert client.get(f"/jobs/{trained['id']}").status_code == 404
    assert client.delete(f"/jobs/{trained['id']}").status_code == 404  # gone, as after any delete
    assert [job["id"] for job in client.get("/jobs").json()["items"]] == [queued["id"]]
