"""Many machines, no shared disk: the API and two workers, each with a data folder of its own,
share only PostgreSQL, Redis and an S3-compatible store (moto's server, in its own process). A job
killed with its worker resumes on the other from the stored checkpoint, bit-exactly; downloads,
logs and delete go through the API from the store; the store going away during a save is ridden
out, and a save it never takes fails the attempt (storage_unavailable) with the earlier
checkpoints intact."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from tests.conftest import REDIS_URL, Backend, truncate_postgres, use_backend
from tests.e2e.conftest import start_worker, stop_worker, submit, upload, wait_for
from tests.e2e.object_store import Relay, free_port, keys, s3_client, start_moto
from tests.e2e.test_resume import comparable_metrics
from tests.e2e.test_training import DEMO_ROWS, spec, wait_until
from tests.integration.archives import archive_files, folder_files
from tests.integration.conftest import authorized, issue, jsonl

pytestmark = pytest.mark.e2e


@pytest.fixture
def machines(postgres_migrated, models_root, monkeypatch, tmp_path):
    """The API in this process (store reached directly) and what each worker's environment needs
    (its own data folder, the store through a relay the test can stop)."""
    truncate_postgres(postgres_migrated)
    moto = start_moto(free_port())
    direct = f"http://127.0.0.1:{moto.args[-1]}"
    relay = Relay(int(moto.args[-1]))
    relay.start()
    bucket = f"traindock-{uuid.uuid4().hex[:8]}"
    s3_client(direct).create_bucket(Bucket=bucket)
    settings = {
        "TRAINDOCK_STORAGE_URL": f"s3://{bucket}/e2e", "TRAINDOCK_STORAGE_RETRY_S": "8",
        "TRAINDOCK_STORAGE_LOG_INTERVAL_S": "1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1", "TRAINDOCK_MODEL_ROOTS": json.dumps([str(models_root)]),
        "TRAINDOCK_HEARTBEAT_INTERVAL_S": "0.5", "TRAINDOCK_HEARTBEAT_TIMEOUT_S": "4",
        "TRAINDOCK_RECOVERY_INTERVAL_S": "0.5", "TRAINDOCK_REDISPATCH_AFTER_S": "1",
    }
    for key, value in {**settings, "AWS_ENDPOINT_URL": direct}.items():
        monkeypatch.setenv(key, value)
    api = Backend("postgres", tmp_path / "api", postgres_migrated, REDIS_URL)
    use_backend(monkeypatch, api)
    holds = tmp_path / "holds"
    holds.mkdir()

    def worker_env(name: str) -> dict[str, str]:
        return {**os.environ, "TRAINDOCK_DATA_DIR": str(tmp_path / name), "AWS_ENDPOINT_URL": relay.endpoint,
                "TRAINDOCK_TEST_HOLD_DIR": str(holds)}

    from api.app import create_app

    started = []
    with TestClient(create_app(), headers=authorized(issue("e2e"))) as client:
        client.api_dir, client.tmp, client.holds, client.relay = api.data_dir, tmp_path, holds, relay
        client.bucket, client.direct = bucket, direct
        client.start = lambda name: started.append(start_worker(tmp_path / f"{name}.log", name=f"{name}@%h",
                                                                env=worker_env(name))) or started[-1]
        yield client
    for worker in started:
        stop_worker(worker)
    relay.stop()
    moto.terminate()
    moto.wait()


def stored(client, prefix: str = "") -> list[str]:
    return [key.removeprefix("e2e/") for key in keys(client.direct, client.bucket, f"e2e/{prefix}")]


def checkpoint_steps(client, job_id: int) -> list[int]:
    return [c["step"] for c in client.get(f"/jobs/{job_id}/checkpoints").json() if not c["deleted"]]


def hold_save(client, step: int) -> None:
    """The save of `step` waits, its folder written and not yet uploaded, until released."""
    (client.holds / f"saving-{step}.arm").touch()


def wait_held(client, step: int) -> None:
    wait_until(lambda: (client.holds / f"saving-{step}.reached").exists())


def release(client, step: int) -> None:
    (client.holds / f"saving-{step}.release").touch()


def body(dataset_id: int, **training) -> dict:
    return spec(dataset_id, **{"max_steps": 40, "logging_steps": 1, "eval_strategy": "no", "save_steps": 10,
                               "save_total_limit": 2, **training})


def test_a_job_killed_with_its_worker_resumes_on_another_machine_from_the_store(machines):
    client = machines
    dataset_id = upload(client, DEMO_ROWS)
    assert stored(client, "datasets/") == [f"datasets/{dataset_id}.jsonl"]
    assert not list(client.api_dir.glob("datasets/*.jsonl"))  # the API keeps no copy
    assert client.get(f"/datasets/{dataset_id}/rows", params={"limit": 2}).json()["rows"] == DEMO_ROWS[:2]
    assert client.get(f"/v1/files/file-{dataset_id}/content").content == jsonl(DEMO_ROWS)

    worker_a = client.start("worker-a")
    reference = wait_for(client, submit(client, body(dataset_id))["id"])
    assert reference["status"] == "succeeded", reference
    output = f"jobs/tenant-1/job-{reference['id']}"
    assert checkpoint_steps(client, reference["id"]) == [30, 40]
    # Rotation (save_total_limit 2) deleted the objects too; the final model is stored.
    assert {key.split("/")[3] for key in stored(client, output + "/")} == {"checkpoint-30", "checkpoint-40", "final"}
    written = client.tmp / "worker-a" / output
    final = client.get(f"/jobs/{reference['id']}/artifacts/final")
    assert final.status_code == 200 and archive_files(final.content) == folder_files(written / "final")
    checkpoint = client.get(f"/jobs/{reference['id']}/checkpoints/40/download")
    assert archive_files(checkpoint.content) == folder_files(written / "checkpoint-40")
    log = client.get(f"/jobs/{reference['id']}/logs")
    assert log.status_code == 200
    assert log.content == (client.tmp / "worker-a" / f"logs/job-{reference['id']}/attempt-1.log").read_bytes()

    # Worker A dies (kill -9) at its save of step 20, once that of step 10 is stored; B, which
    # never saw the job, takes it from there.
    job = submit(client, body(dataset_id))
    hold_save(client, 10)
    hold_save(client, 20)
    wait_held(client, 10)
    assert checkpoint_steps(client, job["id"]) == []  # written, not yet uploaded: not listed
    release(client, 10)
    wait_held(client, 20)
    assert checkpoint_steps(client, job["id"]) == [10]
    os.kill(worker_a.pid, signal.SIGKILL)
    client.start("worker-b")
    finished = wait_for(client, job["id"], timeout=120)
    assert finished["status"] == "succeeded", finished
    assert [(a["status"], a["resume_step"]) for a in finished["attempts"]][-1] == ("succeeded", 10)
    assert not (client.tmp / "worker-a" / f"jobs/tenant-1/job-{job['id']}/final").exists()
    assert (client.tmp / "worker-b" / f"jobs/tenant-1/job-{job['id']}/final").is_dir()
    assert comparable_metrics(client, job["id"]) == comparable_metrics(client, reference["id"])

    assert client.delete(f"/jobs/{reference['id']}").status_code == 204
    assert stored(client, output + "/") == [] and stored(client, f"logs/job-{reference['id']}/") == []
    assert stored(client, f"jobs/tenant-1/job-{job['id']}/")  # the other job's objects stay
    assert client.delete(f"/datasets/{dataset_id}").status_code == 204
    assert stored(client, "datasets/") == []


def test_the_store_going_away_during_a_save(machines):
    client = machines
    dataset_id = upload(client, DEMO_ROWS)
    client.start("worker-b")
    job = submit(client, body(dataset_id, max_steps=30, save_total_limit=None))

    # Away for 3 s while the checkpoint of step 10 uploads: retried, training goes on (the save
    # of step 20 waits for that upload first).
    hold_save(client, 10)
    hold_save(client, 20)
    wait_held(client, 10)
    client.relay.stop()
    release(client, 10)
    time.sleep(3)
    client.relay.start()
    wait_held(client, 20)
    assert checkpoint_steps(client, job["id"]) == [10]

    # Away for longer than TRAINDOCK_STORAGE_RETRY_S (8 s): the attempt fails, step 10 intact.
    client.relay.stop()
    release(client, 20)
    failed = wait_for(client, job["id"], timeout=60)
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "storage_unavailable", failed["error"]
    assert checkpoint_steps(client, job["id"]) == [10]

    client.relay.start()
    resumed = client.post(f"/jobs/{job['id']}/resume")
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["attempts"][-1]["resume_step"] == 10
    done = wait_for(client, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert checkpoint_steps(client, job["id"]) == [10, 20, 30]


def test_a_worker_with_a_store_it_cannot_use_refuses_to_start(machines, tmp_path, monkeypatch):
    def worker_start(**settings) -> list[str]:
        env = {**os.environ, "TRAINDOCK_DATA_DIR": str(tmp_path / "worker-c"), **settings}
        worker = subprocess.run([sys.executable, "-m", "traindock.cli", "worker"], env=env, capture_output=True,
                                text=True, timeout=60)
        assert worker.returncode == 2, worker.stderr
        return worker.stderr.strip().splitlines()

    [line] = worker_start(TRAINDOCK_STORAGE_URL=f"s3://{machines.bucket}-missing/e2e")
    assert line.startswith(f"error: s3://{machines.bucket}-missing/e2e at {machines.direct} refused: NoSuchBucket")
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")  # this server checks credentials
    checking = start_moto(port := free_port())
    try:
        [line] = worker_start(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_SECRET_ACCESS_KEY="wrong")
    finally:
        checking.terminate()
    assert line == (f"error: s3://{machines.bucket}/e2e at http://127.0.0.1:{port} refused: 403 (wrong credentials, "
                    "or no access to the bucket); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
                    "TRAINDOCK_STORAGE_URL")
    health = machines.get("/health").json()
    assert health["storage"] == "ok" and health["store"] == f"s3://{machines.bucket}/e2e at {machines.direct}"
