"""`traindock up`, the README's run command: migrates, prints and saves a first key, serves the
API with a worker (and its webhook sender, which delivers), and leaves no process behind when
stopped."""

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import start_up
from tests.integration.conftest import ALPACA_ROWS, jsonl
from tests.webhook_receiver import receiving

pytestmark = pytest.mark.e2e


def children_of(pid: int) -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.add(int(status.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_up_serves_with_a_first_key_delivers_webhooks_and_stops_its_worker(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    up = start_up(tmp_path / "data", port, {"TRAINDOCK_WEBHOOK_ALLOW_PRIVATE_URLS": "true"},
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        key = (tmp_path / "data" / "api-key").read_text().strip()
        assert oct((tmp_path / "data" / "api-key").stat().st_mode & 0o777) == "0o600"
        jobs = httpx.get(f"http://127.0.0.1:{port}/jobs", headers={"Authorization": f"Bearer {key}"})
        assert jobs.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/jobs").status_code == 401
        with receiving() as receiver:
            deliver_a_cancel(f"http://127.0.0.1:{port}", key, receiver)
        [worker] = children_of(up.pid)
        [webhook_sender] = [pid for pid in children_of(worker)
                            if b"webhooks" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    finally:
        up.send_signal(signal.SIGTERM)
        output = up.communicate(timeout=60)[0]
    assert key in output  # shown once, at creation
    deadline = time.monotonic() + 30
    while alive(worker) or alive(webhook_sender):
        assert time.monotonic() < deadline, "the worker or its webhook sender outlived traindock up"
        time.sleep(0.2)


def deliver_a_cancel(url: str, key: str, receiver) -> None:
    """A job cancelled before it starts: its job.cancelled reaches the receiver."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as api:
        created = api.post("/webhook_endpoints", json={"url": receiver.url, "event_types": ["job.cancelled"]})
        assert created.status_code == 201, created.text
        dataset = api.post("/datasets", files={"file": ("a.jsonl", jsonl(ALPACA_ROWS))}).json()["id"]
        job = api.post("/jobs", json={"base_model": "acme/tiny", "dataset_id": dataset,
                                      "resources": {"queue": "nowhere"}}).json()
        assert api.post(f"/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    [request] = receiver.wait_for(1, timeout=60)
    assert request.body.startswith(b'{"id":"evt_') and b'"fine_tuning.job.cancelled"' in request.body
