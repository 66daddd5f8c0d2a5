"""Every client command against a real API (uvicorn in a thread, SQLite backend), and every
expected failure: one line, a non-zero exit, never a traceback."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from api.app import create_app
from db.engine import session_scope
from db.checkpoints import record_checkpoint
from db.events import add_event
from db.jobs import set_progress, set_result
from db.lifecycle import claim_run, finish_run
from db.metrics import record_metric_points
from db.runs import latest_run
from db.status import JobStatus, RunStatus
from tests.conftest import REPO
from tests.integration.conftest import ALPACA_ROWS, issue, jsonl, make_spec
from tests.live_server import serve
from traindock.cli import app
from traindock.cli.failures import run_cli
from traindock.settings import get_settings


@pytest.fixture
def url(sqlite_backend, monkeypatch):
    monkeypatch.setenv("TRAINDOCK_API_KEY", issue("acme"))
    get_settings.cache_clear()
    with serve(create_app()) as served:
        yield served


@pytest.fixture
def cli(url, capsys):
    def run(*args: str) -> tuple[int, str, str]:
        code = run_cli(app, [*args, "--url", url])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err
    return run


@pytest.fixture
def dataset_file(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(jsonl(ALPACA_ROWS))
    return path


def spec_file(tmp_path, dataset_id: int, suffix: str = ".json", **overrides):
    path = tmp_path / f"spec{suffix}"
    spec = make_spec(dataset_id, **overrides)
    path.write_text(json.dumps(spec))  # JSON is YAML too
    return path


def job_with_history(job_id: int, final: JobStatus | None = JobStatus.SUCCEEDED) -> None:
    with session_scope() as session:
        run_id = latest_run(session, job_id).id
        assert claim_run(session, run_id, "test-worker") is not None
        record_metric_points(session, job_id, run_id, [(1, 0.5, {"loss": 2.0}), (2, 1.0, {"loss": 1.0, "eval_loss": 1.5})])
        set_progress(session, job_id, {"step": 2, "max_steps": 4, "loss": 1.0, "steps_per_second": 3.0, "eta_seconds": 1.0})
        add_event(session, job_id, "run.traceback", "log tail\nValueError: boom", run_id=run_id)
    if final:
        with session_scope() as session:
            assert finish_run(session, run_id, RunStatus(final), str(final)) is not None


def test_datasets(cli, dataset_file):
    assert cli("datasets", "list")[1].strip() == "no datasets"
    code, out, _ = cli("datasets", "upload", str(dataset_file))
    assert code == 0 and out.startswith("dataset 1: 20 alpaca rows")
    code, out, _ = cli("datasets", "list")
    assert code == 0 and "format" in out.splitlines()[1] and "alpaca" in out
    assert json.loads(cli("datasets", "list", "--json")[1])[0]["id"] == 1
    assert "sha256" in cli("datasets", "show", "1")[1]
    assert json.loads(cli("datasets", "show", "1", "--json")[1])["rows"] == 20
    assert cli("datasets", "delete", "1") == (0, "deleted dataset 1\n", "")
    code, _, err = cli("datasets", "show", "1")
    assert code == 1 and err.startswith("error 404:")


def test_submit_list_show_metrics_cancel_resume(cli, dataset_file, tmp_path):
    assert cli("list")[1].strip() == "no jobs"
    cli("datasets", "upload", str(dataset_file))
    assert cli("submit", str(spec_file(tmp_path, 1, name="first")))[1] == "submitted job 1 (queued)\n"
    submitted = json.loads(cli("submit", str(spec_file(tmp_path, 1, ".yaml", name="second")), "--json")[1])
    assert submitted["id"] == 2 and submitted["name"] == "second"
    job_with_history(1, final=None)
    code, out, _ = cli("list")
    header = out.splitlines()[1]
    assert code == 0 and all(column in header for column in ("id", "name", "model", "status", "step/total", "loss", "age"))
    assert "2/4" in out and "1.0000" in out and "acme/tiny-llama" in out
    assert [job["id"] for job in json.loads(cli("list", "--json")[1])] == [2, 1]
    assert "queued" in cli("list", "--status", "queued")[1] and "running" not in cli("list", "--status", "queued")[1]
    assert "status       running" in cli("show", "1")[1]
    assert json.loads(cli("show", "1", "--json")[1])["progress"]["step"] == 2
    code, out, _ = cli("metrics", "1")
    assert code == 0 and "eval_loss" in out
    assert cli("metrics", "1", "--csv")[1].splitlines() == [
        "step,name,value,epoch", "1,loss,2.0,0.5", "2,eval_loss,1.5,1.0", "2,loss,1.0,1.0"]
    assert len(json.loads(cli("metrics", "1", "--name", "loss", "--json")[1])) == 2
    assert cli("cancel", "2") == (0, "job 2: cancelled\n", "")
    assert json.loads(cli("cancel", "2", "--json")[1])["status"] == "cancelled"
    code, _, err = cli("resume", "2", "--step", "3", "--set", "num_train_epochs=5")
    assert code == 1 and err.startswith("error 422") and "checkpoint" in err


def test_pause_and_resume(cli, dataset_file, tmp_path):
    cli("datasets", "upload", str(dataset_file))
    cli("submit", str(spec_file(tmp_path, 1)))
    assert cli("pause", "1") == (0, "job 1: paused\n", "")
    assert json.loads(cli("show", "1", "--json")[1])["status"] == "paused"
    code, out, _ = cli("resume", "1")
    assert code == 0 and "queued" in out
    assert cli("cancel", "1")[0] == 0
    code, _, err = cli("pause", "1")
    assert code == 1 and err.startswith("error 409") and "only queued or running jobs can be paused" in err


def test_watch_and_logs(cli, dataset_file, tmp_path):
    cli("datasets", "upload", str(dataset_file))
    cli("submit", str(spec_file(tmp_path, 1)))
    cli("submit", str(spec_file(tmp_path, 1, output_dir="two")))
    job_with_history(1)
    code, out, _ = cli("watch", "1")
    assert code == 0
    assert "job 1 running" in out and "step 2/4" in out and "3.00 it/s" in out and "loss 1.0000" in out
    assert "eval_loss 1.5000" in out and out.splitlines()[-1].startswith("job 1 succeeded")
    job_with_history(2, final=JobStatus.FAILED)
    code, out, err = cli("watch", "2")
    assert code == 1 and "job 2 failed" in err
    assert cli("logs", "1")[1] == "log tail\nValueError: boom\n"
    assert cli("logs", "1", "--follow")[1] == "log tail\nValueError: boom\n"
    assert json.loads(cli("logs", "1", "--json")[1])["type"] == "run.traceback"
    cli("submit", str(spec_file(tmp_path, 1, output_dir="three")))
    code, _, err = cli("logs", "3")
    assert code == 0 and "no log lines recorded for job 3" in err


def test_logs_shows_the_attempts_training_log_from_the_api(cli, dataset_file, tmp_path):
    from traindock.paths import attempt_log_path, rank_log_path

    cli("datasets", "upload", str(dataset_file))
    cli("submit", str(spec_file(tmp_path, 1)))
    job_with_history(1, final=None)
    log = attempt_log_path(get_settings().logs_dir, 1, 1)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("loading the model\nstep 1 loss 2.0\n")
    rank_log_path(log, 1).write_text("rank 1 says hello\n")
    assert cli("logs", "1") == (0, "loading the model\nstep 1 loss 2.0\n", "")
    assert cli("logs", "1", "--attempt", "1")[1] == "loading the model\nstep 1 loss 2.0\n"
    assert cli("logs", "1", "--rank", "1")[1] == "rank 1 says hello\n"
    code, _, err = cli("logs", "1", "--attempt", "2")
    assert code == 1 and err == "job 1 has no log for attempt 2\n"
    assert cli("logs", "1", "--events")[1] == "log tail\nValueError: boom\n"  # what it recorded as events

    def train_on_then_finish() -> None:
        with log.open("a") as out:
            out.write("step 2 loss 1.0\n")
        time.sleep(1.2)
        with log.open("a") as out:
            out.write("done\n")
        with session_scope() as session:
            finish_run(session, latest_run(session, 1).id, RunStatus.SUCCEEDED, "succeeded")

    threading.Timer(0.5, train_on_then_finish).start()
    code, out, _ = cli("logs", "1", "--follow")  # until the job ends, with what it wrote meanwhile
    assert (code, out) == (0, "loading the model\nstep 1 loss 2.0\nstep 2 loss 1.0\ndone\n")


def test_watch_view_on_a_terminal_draws_a_bar_and_a_loss_chart():
    from io import StringIO

    from rich.console import Console

    from traindock.cli.sse import StreamEvent
    from traindock.cli.watch import JobView, show

    events = [StreamEvent("status", {"status": "running", "at": "2026-01-01T00:00:00+00:00"}, 1),
              StreamEvent("metrics", {"points": [{"name": "loss", "step": s, "value": 3 - s / 10, "epoch": 0.1}
                                                 for s in range(1, 20)]}, 2),
              StreamEvent("progress", {"step": 19, "max_steps": 40, "phase": "training", "steps_per_second": 2.0,
                                       "eta_seconds": 10.5}, 3),
              StreamEvent("status", {"status": "succeeded"}, 4)]
    screen = StringIO()
    show(events, JobView(1), Console(file=screen, force_terminal=True, width=120))
    drawn = screen.getvalue()
    assert "training" in drawn and "step 19/40" in drawn and "2.00 it/s" in drawn and "█" in drawn and "▁" in drawn


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must hold one job spec"),
])
def test_a_bad_spec_file_is_one_line(cli, tmp_path, content, message):
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    code, out, err = cli("submit", str(path))
    assert code == 1 and message in err and len(err.splitlines()) == 1


def test_bad_yaml_and_refused_fields_are_explained(cli, tmp_path, dataset_file):
    path = tmp_path / "spec.yaml"
    path.write_text("base_model: [unclosed\n")
    code, _, err = cli("submit", str(path))
    assert code == 1 and "is not valid YAML" in err
    cli("datasets", "upload", str(dataset_file))
    code, _, err = cli("submit", str(spec_file(tmp_path, 1, training={"learning_rate": -1, "lerning_rate": 1})))
    assert code == 1 and err.startswith("error 422:")
    assert "training.learning_rate:" in err and "training.lerning_rate:" in err
    assert cli("resume", "1", "--set", "oops")[0] == 1
    code, _, err = cli("pause", "99")  # unknown job (or no pause route yet): the API's answer
    assert code == 1 and err.startswith(("error 404", "error 405"))


def test_a_refused_connection_is_one_line(capsys):
    code = run_cli(app, ["list", "--url", "http://127.0.0.1:9"])
    out, err = capsys.readouterr()
    assert code == 1 and "cannot reach http://127.0.0.1:9" in err and "Traceback" not in out + err


def cli_process(url: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "TRAINDOCK_API_KEY": get_settings().api_key.get_secret_value()}
    return subprocess.Popen([sys.executable, "-m", "traindock.cli", *args, "--url", url], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_broken_pipe_and_ctrl_c_end_with_one_line(url, cli, dataset_file, tmp_path):
    cli("datasets", "upload", str(dataset_file))
    cli("submit", str(spec_file(tmp_path, 1)))
    job_with_history(1, final=None)
    with session_scope() as session:
        record_metric_points(session, 1, latest_run(session, 1).id,
                             [(step, None, {f"metric_{n}": 1.0 for n in range(20)}) for step in range(3, 400)])
    piped = cli_process(url, "metrics", "1", "--csv")
    assert piped.stdout.readline() == "step,name,value,epoch\n"
    piped.stdout.close()  # as `| head -1` does
    code, err = piped.wait(timeout=60), piped.stderr.read()
    assert (code, err) == (141, "output closed before the command finished\n")

    watching = cli_process(url, "watch", "1")
    for line in watching.stdout:  # the replayed states, then the live one
        if line.startswith("job 1 running"):
            break
    else:
        pytest.fail(f"watch ended: {watching.stderr.read()}")
    watching.send_signal(signal.SIGINT)
    assert watching.wait(timeout=60) == 130
    assert watching.stderr.read() == "interrupted\n"


# The CLI, with the close of its stream made to hang once the job's running state was shown: as
# when Ctrl-C lands in httpcore just after it took a connection's lock (in a lock's __enter__,
# before the `with` that would release it), and closing the response then waits on that lock.
STUCK_CLOSE = """
import sys, threading
import httpcore._sync.http11 as http11
import traindock.cli.sse as sse
stuck, parse = threading.Lock(), sse.parse
stuck.acquire()
def parse_then_stick(lines):
    for event in parse(lines):
        if event.type == "status" and event.data.get("status") == "running":
            http11.HTTP11Connection._response_closed = lambda self: stuck.acquire()
        yield event
sse.parse = parse_then_stick
from traindock.cli import main
sys.argv[0] = "traindock"
main()
"""


def test_ctrl_c_ends_watch_within_a_second_even_when_the_unwinding_hangs(url, cli, dataset_file, tmp_path):
    cli("datasets", "upload", str(dataset_file))
    cli("submit", str(spec_file(tmp_path, 1)))
    job_with_history(1, final=None)
    env = {**os.environ, "TRAINDOCK_API_KEY": get_settings().api_key.get_secret_value()}
    watching = subprocess.Popen([sys.executable, "-c", STUCK_CLOSE, "watch", "1", "--url", url], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in watching.stdout:
        if line.startswith("job 1 running"):
            break
    else:
        pytest.fail(f"watch ended: {watching.stderr.read()}")
    interrupted = time.monotonic()
    watching.send_signal(signal.SIGINT)
    try:
        code = watching.wait(timeout=5)
    finally:
        watching.kill()
    assert (code, watching.stderr.read()) == (130, "interrupted\n")
    assert time.monotonic() - interrupted < 1.5


def test_download_unpacks_the_final_model_and_a_checkpoint(cli, dataset_file, tmp_path):
    cli("datasets", "upload", str(dataset_file))
    cli("submit", str(spec_file(tmp_path, 1)))
    output = get_settings().data_dir / "jobs" / "tenant-1" / "job-1"
    final, checkpoint = output / "final", output / "checkpoint-2"
    (final / "nested").mkdir(parents=True)
    (final / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 5000)
    (final / "nested" / "tokenizer.json").write_text('{"x": 1}')
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text("{}")
    job_with_history(1)
    with session_scope() as session:
        record_checkpoint(session, 1, latest_run(session, 1).id, 2, str(checkpoint), {"loss": 1.0})
        set_result(session, 1, {"final_model_path": str(final)})
    code, out, _ = cli("download", "1", "-o", str(tmp_path / "got"))
    assert code == 0 and "job-1-final: 2 files" in out
    unpacked = tmp_path / "got" / "job-1-final"
    assert (unpacked / "adapter_model.safetensors").read_bytes() == (final / "adapter_model.safetensors").read_bytes()
    assert (unpacked / "nested" / "tokenizer.json").read_text() == '{"x": 1}'
    assert cli("download", "1", "--checkpoint", "2", "-o", str(tmp_path / "got"))[0] == 0
    assert (tmp_path / "got" / "job-1-checkpoint-2" / "trainer_state.json").read_text() == "{}"
    code, _, err = cli("download", "1", "--checkpoint", "7", "-o", str(tmp_path / "got"))
    assert code == 1 and err.startswith("error 404")


def test_workers_shows_each_queues_capacity_and_admins_every_worker(cli, monkeypatch):
    from db.workers import register_worker

    assert cli("workers")[1].strip() == "no live workers"
    with session_scope() as session:
        register_worker(session, {"name": "w1@gpu-host", "host": "gpu-host", "pid": 7, "queues": ["gpu"],
                                  "gpus": [{"index": i, "name": "NVIDIA A100", "memory_bytes": 80 * 2**30,
                                            "compute_capability": "8.0", "bf16": True} for i in (0, 1)],
                                  "integrations": ["tensorboard"], "versions": {"torch": "2.13.0"}})
    code, out, _ = cli("workers")
    assert code == 0 and "2x NVIDIA A100 (80 GiB, bf16)" in out and "tensorboard" in out
    assert "gpu-host" not in out  # a tenant sees capacity, not hosts
    assert json.loads(cli("workers", "--json")[1])["queues"][0]["live_workers"] == 1

    monkeypatch.setenv("TRAINDOCK_ADMIN_TENANTS", '["acme"]')
    get_settings.cache_clear()
    code, out, _ = cli("workers")
    assert code == 0 and "heartbeat" in out and "live" in out  # the second table, of workers
    [worker] = json.loads(cli("workers", "--json")[1])["workers"]
    assert (worker["name"], worker["host"], worker["live"]) == ("w1@gpu-host", "gpu-host", True)
