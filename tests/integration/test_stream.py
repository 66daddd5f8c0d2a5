"""GET /jobs/{id}/stream and GET /jobs/stream against a real uvicorn server on both backends; job
state is driven by writing through the db functions, as the worker and training process do."""

import httpx
import pytest

from api import stream_follower
from api.app import create_app
from db.checkpoints import record_checkpoint
from db.engine import session_scope
from db.events import add_event
from db.jobs import set_progress
from db.lifecycle import claim_run, finish_run
from db.metrics import record_metric_points
from db.runs import latest_run
from db.status import JobStatus, RunStatus
from tests.integration.conftest import ALPACA_ROWS, authorized, issue, jsonl, make_spec
from tests.live_server import serve
from traindock.cli.sse import parse


@pytest.fixture
def api(backend):
    """(url, key of tenant 'acme')"""
    key = issue("acme")
    with serve(create_app()) as url:
        yield url, key


def new_job(url: str, key: str) -> int:
    with httpx.Client(base_url=url, headers=authorized(key)) as client:
        dataset = client.post("/datasets", files={"file": ("a.jsonl", jsonl(ALPACA_ROWS))}).json()
        response = client.post("/jobs", json=make_spec(dataset["id"]))
        assert response.status_code == 201, response.text
        return response.json()["id"]


def change_status(job_id: int, status: JobStatus) -> None:
    """As the worker does: claim the queued run, or finish the running one."""
    with session_scope() as session:
        run_id = latest_run(session, job_id).id
        if status == JobStatus.RUNNING:
            assert claim_run(session, run_id, "test-worker") is not None
        else:
            assert finish_run(session, run_id, RunStatus(status), f"now {status}") is not None


def metrics(job_id: int, step: int, loss: float) -> None:
    with session_scope() as session:
        record_metric_points(session, job_id, latest_run(session, job_id).id, [(step, step / 10, {"loss": loss})])


def progress(job_id: int, step: int) -> None:
    with session_scope() as session:
        set_progress(session, job_id, {"step": step, "max_steps": 4})


def checkpoint(job_id: int, step: int) -> None:
    with session_scope() as session:
        record_checkpoint(session, job_id, latest_run(session, job_id).id, step, f"/tmp/checkpoint-{step}", None)


def other_event(job_id: int) -> None:
    with session_scope() as session:
        add_event(session, job_id, "run.process_started", "training process 1 started")


def stream(url: str, key: str, path: str, last_id: int | None = None):
    headers = authorized(key) | ({"Last-Event-ID": str(last_id)} if last_id is not None else {})
    return httpx.stream("GET", url + path, headers=headers, timeout=httpx.Timeout(30))


def replay(url: str, key: str, job_id: int, last_id: int | None = None) -> list:
    """Everything of a finished job: the stream closes by itself after the terminal status."""
    with stream(url, key, f"/jobs/{job_id}/stream", last_id) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(parse(response.iter_lines()))


def test_replays_follows_live_and_closes_after_the_terminal_status(api):
    url, key = api
    job_id = new_job(url, key)
    change_status(job_id, JobStatus.RUNNING)
    metrics(job_id, 1, 2.0)
    progress(job_id, 1)
    with stream(url, key, f"/jobs/{job_id}/stream") as response:
        events = parse(response.iter_lines())
        replayed = [next(events) for _ in range(4)]
        assert [e.type for e in replayed] == ["status", "status", "metrics", "progress"]
        assert [e.data["status"] for e in replayed if e.type == "status"] == ["queued", "running"]
        assert replayed[2].data["points"] == [{"name": "loss", "step": 1, "value": 2.0, "epoch": 0.1}]
        assert replayed[3].data["step"] == 1
        metrics(job_id, 2, 1.5)
        checkpoint(job_id, 2)
        other_event(job_id)
        metrics(job_id, 1, 1.9)  # a resumed attempt repeats step 1
        change_status(job_id, JobStatus.SUCCEEDED)
        live = list(events)  # ends: the stream closes after the terminal status
    assert [e.type for e in live] == ["metrics", "checkpoint", "event", "metrics", "status"]
    assert live[1].data["step"] == 2 and live[2].data["type"] == "run.process_started"
    assert live[4].data["status"] == "succeeded" and "result" in live[4].data and "error" in live[4].data
    ids = [e.id for e in replayed + live]
    assert ids == sorted(set(ids))


def test_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(api):
    url, key = api
    job_id = new_job(url, key)
    change_status(job_id, JobStatus.RUNNING)
    for step in (1, 2, 3):
        metrics(job_id, step, 3.0 - step / 2)
        progress(job_id, step)
    with stream(url, key, f"/jobs/{job_id}/stream") as response:
        events = parse(response.iter_lines())
        first = [next(events) for _ in range(3)]
    # Written while the client is away, including a replaced step it already has.
    metrics(job_id, 2, 0.5)
    checkpoint(job_id, 3)
    change_status(job_id, JobStatus.SUCCEEDED)
    rest = replay(url, key, job_id, last_id=first[-1].id)
    full = replay(url, key, job_id)
    assert [e.id for e in first + rest] == [e.id for e in full]
    assert [(e.type, e.data) for e in first + rest] == [(e.type, e.data) for e in full]
    # The replaced point is replayed once, with its new value; only the latest progress.
    losses = [(p["step"], p["value"]) for e in full if e.type == "metrics" for p in e.data["points"]]
    assert sorted(losses) == [(1, 2.5), (2, 0.5), (3, 1.5)]
    assert [e.data["step"] for e in full if e.type == "progress"] == [3]
    assert replay(url, key, job_id, last_id=full[-1].id) == []


def test_the_jobs_stream_position_opens_the_stream_after_what_the_answer_showed(api):
    """The dashboard reads the job, its series and its events, then follows the stream from the
    job's `stream_position`: it gets exactly what was written after that read, and an event's
    `stream_id` tells which listed events the stream will send again."""
    url, key = api
    job_id = new_job(url, key)
    change_status(job_id, JobStatus.RUNNING)
    metrics(job_id, 1, 2.0)
    progress(job_id, 1)
    with httpx.Client(base_url=url, headers=authorized(key)) as client:
        position = client.get(f"/jobs/{job_id}").json()["stream_position"]
    metrics(job_id, 2, 1.5)
    change_status(job_id, JobStatus.SUCCEEDED)
    full = replay(url, key, job_id)
    assert position == max(e.id for e in full if e.type == "progress")
    after = replay(url, key, job_id, last_id=position)
    assert [(e.id, e.type, e.data) for e in after] == [(e.id, e.type, e.data) for e in full if e.id > position]
    assert [e.type for e in after] == ["metrics", "status"]
    with httpx.Client(base_url=url, headers=authorized(key)) as client:
        listed = client.get(f"/jobs/{job_id}/events").json()["items"]
    assert [e["stream_id"] for e in listed] == [e.id for e in full if e.type == "status"]


def test_a_long_replay_is_read_in_slices_without_gaps(api, monkeypatch):
    monkeypatch.setattr(stream_follower, "MAX_SEQS_PER_POLL", 2)
    test_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(api)


def test_auth_and_tenants(api):
    url, key = api
    job_id = new_job(url, key)
    other = issue("globex")
    for path, headers, status in ((f"/jobs/{job_id}/stream", {}, 401),
                                  (f"/jobs/{job_id}/stream", authorized("nope"), 401),
                                  (f"/jobs/{job_id}/stream", authorized(other), 404),
                                  (f"/jobs/{job_id + 1000}/stream", authorized(key), 404),
                                  (f"/jobs/{job_id}/stream", authorized(key) | {"Last-Event-ID": "x"}, 422),
                                  ("/jobs/stream", {}, 401)):
        assert httpx.get(url + path, headers=headers).status_code == status, path


def test_job_list_stream_shows_the_tenants_status_changes_only(api):
    url, key = api
    mine = new_job(url, key)
    other_key = issue("globex")
    theirs = new_job(url, other_key)
    with stream(url, key, "/jobs/stream") as response:
        assert response.status_code == 200
        events = parse(response.iter_lines())
        snapshot = next(events)
        assert (snapshot.type, snapshot.data["id"], snapshot.data["status"]) == ("status", mine, "queued")
        change_status(theirs, JobStatus.RUNNING)
        change_status(mine, JobStatus.RUNNING)
        change = next(events)
        assert (change.data["id"], change.data["status"]) == (mine, "running")
