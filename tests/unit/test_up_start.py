"""What `traindock up` says as it starts (traindock/cli/up.py): one line as each part is ready, and,
for a part that ends of itself, its exit code and its log's last lines; nothing for a part stopped
by the Ctrl-C that reaches it as it reaches `up`. The real thing: tests/e2e/test_up.py."""

import subprocess
import sys
import time
from types import SimpleNamespace

from traindock.cli import up


class Process:
    def __init__(self, pid: int, code: int | None = None):
        self.pid, self.returncode = pid, code

    def poll(self):
        return self.returncode


class Said(list):
    watch: up.StartWatch


def start_watch(monkeypatch, processes: dict, registered: dict, logs=None) -> Said:
    said = Said()
    monkeypatch.setattr(up, "say", said.append)
    monkeypatch.setattr(up, "POLL_S", 0.01)
    monkeypatch.setattr(up.StartWatch, "_api_answers", lambda self: True)
    monkeypatch.setattr(up.StartWatch, "_registered", lambda self: registered)
    said.watch = up.StartWatch(SimpleNamespace(), "http://127.0.0.1:8000", processes, logs).start()
    return said


def said_once_settled(said: Said) -> list[str]:
    time.sleep(0.3)
    said.watch.stop()
    said.watch.thread.join(timeout=5)
    return list(said)


def test_each_part_is_said_ready_once_then_up_is_ready(monkeypatch):
    worker = SimpleNamespace(queues=["gpu"], gpus=[], inference_url=None)
    server = SimpleNamespace(queues=["inference"], gpus=[], inference_url="http://127.0.0.1:4321")
    said = start_watch(monkeypatch, {"worker": Process(10), "serve": Process(11)}, {10: worker, 11: server})
    assert said_once_settled(said) == [
        "API ready at http://127.0.0.1:8000", "worker ready: queue gpu, CPU",
        "inference server ready at http://127.0.0.1:4321",
        "ready; Ctrl-C stops (a running job checkpoints and goes back to the queue)"]


def test_a_part_that_ends_of_itself_is_said_with_its_logs_end_and_ctrl_c_is_not(monkeypatch, tmp_path):
    log = tmp_path / "worker.log"
    log.write_text("banner\nTraceback (most recent call last):\nValueError: bad\n")
    said = start_watch(monkeypatch, {"worker": Process(10, code=1), "serve": Process(11, code=-2)}, {},
                       {"worker": log, "serve": tmp_path / "serve.log"})
    assert said_once_settled(said) == [
        "API ready at http://127.0.0.1:8000", f"the worker exited with code 1; the end of {log}:",
        "  banner\n  Traceback (most recent call last):\n  ValueError: bad"]


def test_the_api_log_config_keeps_every_line_in_the_file_and_warnings_on_the_terminal(tmp_path):
    # In a process of its own: dictConfig closes every handler the process has (pytest's too).
    path = tmp_path / "api.log"
    terminal = subprocess.run([sys.executable, "-c", f"""
import logging, logging.config
from pathlib import Path
from traindock.cli.up import api_log_config
logging.config.dictConfig(api_log_config(Path({str(path)!r})))
logging.getLogger("uvicorn.error").info("Application startup complete.")
logging.getLogger("uvicorn.error").warning("something to see")
"""], capture_output=True, text=True, check=True)
    text = path.read_text()
    assert "Application startup complete." in text and "something to see" in text
    assert "\x1b[" not in text  # no colours in the file
    assert "something to see" in terminal.stderr and "startup complete" not in terminal.stderr


def test_the_local_url_of_an_address_that_listens_everywhere():
    assert up.local_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert up.local_url("::1", 8000) == "http://[::1]:8000"
    assert up.local_url("example.internal", 80) == "http://example.internal:80"
