"""`traindock up`, the README's run command: migrates, prints and saves a first key, says in a few
lines where the API, the dashboard, the key and the logs are and when each part is ready, serves
the API with a worker (and its webhook sender, which delivers) and an inference server, and leaves
no process behind when stopped."""

import signal
import socket
import subprocess
import threading
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
    lines = read_lines(up)
    try:
        wait_for_line(lines, "worker ready")
        wait_for_line(lines, "inference server ready at http://127.0.0.1:")
        key = (tmp_path / "data" / "api-key").read_text().strip()
        assert oct((tmp_path / "data" / "api-key").stat().st_mode & 0o777) == "0o600"
        jobs = httpx.get(f"http://127.0.0.1:{port}/jobs", headers={"Authorization": f"Bearer {key}"})
        assert jobs.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/jobs").status_code == 401
        with receiving() as receiver:
            deliver_a_cancel(f"http://127.0.0.1:{port}", key, receiver)
        children = children_of(up.pid)  # the worker (titled by Celery) and `python -m traindock.cli serve`
        [inference] = [pid for pid in children if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[3:4] == [b"serve"]]
        [worker] = children - {inference}
        [webhook_sender] = [pid for pid in children_of(worker)
                            if b"webhooks" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        lines.reader.join(timeout=10)
    output = "".join(lines)
    assert key in output  # shown once, at creation
    assert_a_short_start_up(output, port, (tmp_path / "data").resolve())
    deadline = time.monotonic() + 30
    parts = {"the worker": worker, "its webhook sender": webhook_sender, "the inference server": inference}
    while living := [name for name, pid in parts.items() if alive(pid)]:
        assert time.monotonic() < deadline, f"{', '.join(living)} outlived traindock up"
        time.sleep(0.2)


class Lines(list):
    reader: threading.Thread


def read_lines(process: subprocess.Popen) -> Lines:
    """The process's output lines as they come, read by a thread."""
    lines = Lines()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)

    lines.reader = threading.Thread(target=read, daemon=True)
    lines.reader.start()
    return lines


def wait_for_line(lines: list[str], text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in list(lines)):
        assert time.monotonic() < deadline, f"no line with {text!r} in:\n{''.join(lines)}"
        time.sleep(0.1)


def assert_a_short_start_up(output: str, port: int, data: Path) -> None:
    """What a user sees: where the API, the dashboard, the key and the logs are and that the
    worker and the inference server are ready; Celery's banner and its superuser warning are in
    the worker's log file, not on the terminal."""
    url = f"http://127.0.0.1:{port}"
    for expected in (f"API        {url}", f"dashboard  {url}/ui", f"API key    {data / 'api-key'}",
                     str(data / "logs" / "worker.log"), f"API ready at {url}", "worker ready: queue gpu",
                     "inference server ready at http://127.0.0.1:", "ready; Ctrl-C stops"):
        assert expected in output, (expected, output)
    for unwanted in ("[config]", "[queues]", ".> app:", "SecurityWarning", "superuser privileges", "Uvicorn running"):
        assert unwanted not in output, (unwanted, output)
    assert len(output.splitlines()) < 20, output
    worker_log = (data / "logs" / "worker.log").read_text()
    assert "[queues]" in worker_log  # the worker's full output: its banner, there
    assert "superuser privileges" not in worker_log  # not said when it accepts JSON only, as root or not
    assert "inference server ready at" in (data / "logs" / "serve.log").read_text()
    assert "GET /jobs" in (data / "logs" / "api.log").read_text()  # the requests, there


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
