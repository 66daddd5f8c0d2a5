"""End to end: the real API (in process), a real Celery worker process, the real training
process and a real Trainer run on the tiny model, on both backends."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import reset_caches
from tests.integration.conftest import authorized, issue, jsonl

FINISHED = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="session")
def models_root(tmp_path_factory) -> Path:
    from worker.tinymodel import build_tiny_model

    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root / "tiny")
    return root


@pytest.fixture
def stack(request, backend, models_root, monkeypatch, tmp_path):
    """API client + one worker process sharing the backend's settings; parametrized indirectly
    with a string, the worker's GPU set (`--gpus`)."""
    monkeypatch.setenv("TRAINDOCK_MODEL_ROOTS", json.dumps([str(models_root)]))
    monkeypatch.setenv("TRAINDOCK_HEARTBEAT_INTERVAL_S", "0.5")
    monkeypatch.setenv("TRAINDOCK_HEARTBEAT_TIMEOUT_S", "4")
    monkeypatch.setenv("TRAINDOCK_RECOVERY_INTERVAL_S", "0.5")
    monkeypatch.setenv("TRAINDOCK_REDISPATCH_AFTER_S", "1")
    reset_caches()
    from api.app import create_app

    worker = start_worker(tmp_path / "worker.log", gpus=getattr(request, "param", None))
    with TestClient(create_app(), headers=authorized(issue("e2e"))) as client:
        client.worker = worker
        client.backend = backend
        yield client
    stop_worker(client.worker)  # the one a test may have started in its place


def start_worker(log_path: Path, name: str | None = None, gpus: str | None = None,
                 queues: str | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    log = log_path.open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "traindock.cli", "worker", "--loglevel", "info",
         "--name", name or f"test-{uuid.uuid4().hex[:6]}@%h", *(["--gpus", gpus] if gpus else []),
         *(["--queues", queues] if queues else [])],
        env=env or dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
    )
    worker.log_path = log_path
    deadline = time.monotonic() + 60
    while b"ready." not in log_path.read_bytes():
        assert worker.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "worker did not start:\n" + log_path.read_text()
        time.sleep(0.1)
    return worker


def stop_worker(worker: subprocess.Popen) -> None:
    """Cold shutdown: a test's leftover training process dies with its supervisor."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGQUIT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def upload(client, rows) -> int:
    response = client.post("/datasets", files={"file": ("data.jsonl", jsonl(rows))})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def submit(client, spec: dict) -> dict:
    response = client.post("/jobs", json=spec)
    assert response.status_code == 201, response.text
    return response.json()


def wait_for(client, job_id: int, statuses=FINISHED, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            events = client.get(f"/jobs/{job_id}/events").json()["items"]
            log = Path(client.worker.log_path).read_text()[-3000:]
            pytest.fail(f"job {job_id} still {job['status']}; events: {events}\nworker log:\n{log}")
        time.sleep(0.1)


def all_metrics(client, job_id: int, *names: str) -> list[dict]:
    points, cursor = [], None
    while True:
        params = [("name", n) for n in names] + ([("cursor", cursor)] if cursor else []) + [("limit", 500)]
        page = client.get(f"/jobs/{job_id}/metrics", params=params).json()
        points += page["items"]
        if not (cursor := page["next_cursor"]):
            return points


def output_folder(client, job: dict) -> Path:
    """The job's output folder on this machine (the API names folders only relative to it)."""
    [folder] = (client.backend.data_dir / "jobs").glob(f"tenant-*/{job['spec']['output_dir']}")
    return folder


def start_up(data_dir: Path, port: int, settings: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """`traindock up` on `port` with only `data_dir` (and `settings`) set (as on a fresh machine),
    once /health answers; `popen`: where its output goes, its working folder."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRAINDOCK_")}
    env["TRAINDOCK_DATA_DIR"] = str(data_dir)
    env.update(settings or {})
    up = subprocess.Popen([sys.executable, "-m", "traindock.cli", "up", "--port", str(port)], env=env, **popen)
    up.env = env
    deadline = time.monotonic() + 60
    while True:
        if up.poll() is not None or time.monotonic() > deadline:
            up.kill()
            pytest.fail("traindock up did not serve")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return up
        except httpx.HTTPError:
            time.sleep(0.2)


def start_inference_server(log_path: Path, *options: str) -> subprocess.Popen:
    """`traindock serve` on a free port, once its URL is in the worker registry."""
    from db.engine import session_scope
    from db.workers import live_inference_urls

    log = log_path.open("wb")
    server = subprocess.Popen([sys.executable, "-m", "traindock.cli", "serve", *options],
                              env=dict(os.environ),
                              stdout=log, stderr=subprocess.STDOUT)
    server.log_path = log_path
    deadline = time.monotonic() + 90
    while True:
        assert server.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "inference server did not register:\n" + log_path.read_text()
        with session_scope() as session:
            if live_inference_urls(session, 60):
                return server
        time.sleep(0.2)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
