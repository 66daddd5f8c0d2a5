"""Faults the service rides out, on the real backends: submits that race, a broker that is down at
submit or lost its messages, a database that does not answer, upload leftovers."""

import fcntl
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from db.engine import session_scope
from db.models import Run
from db.outbox import resend_lost, send_unsent
from db.clock import database_now
from tests.conftest import REDIS_URL, reset_caches
from tests.integration.conftest import authorized, issue, make_spec
from tests.integration.test_jobs import queued_messages
from traindock.dataset_files import sweep_dataset_files
from traindock.settings import get_settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_concurrent_submits_of_one_output_dir_create_one_job(client, dataset):
    spec = make_spec(dataset["id"], output_dir="shared")
    with ThreadPoolExecutor(10) as pool:
        codes = sorted(pool.map(lambda _: client.post("/jobs", json=spec).status_code, range(10)))
    assert codes == [201] + [422] * 9
    assert len(client.get("/jobs").json()["items"]) == 1


def test_concurrent_submits_respect_the_queued_limit(client, dataset, monkeypatch):
    monkeypatch.setenv("TRAINDOCK_MAX_QUEUED_JOBS_PER_TENANT", "3")
    get_settings.cache_clear()
    with ThreadPoolExecutor(10) as pool:
        codes = sorted(pool.map(lambda n: client.post("/jobs", json=make_spec(dataset["id"], output_dir=f"out-{n}"))
                                .status_code, range(10)))
    assert codes == [201] * 3 + [429] * 7


def test_a_submit_while_the_broker_is_down_stays_queued_and_is_sent_when_it_is_back(backend, client, dataset, monkeypatch):
    if backend.name != "postgres":
        pytest.skip("the filesystem broker is a folder: it is never down")
    monkeypatch.setenv("TRAINDOCK_BROKER_URL", f"redis://127.0.0.1:{closed_port()}/0")
    reset_caches()
    spec = make_spec(dataset["id"])
    created = client.post("/jobs", json=spec, headers={"Idempotency-Key": "k1"})
    assert created.status_code == 201 and created.json()["status"] == "queued"
    job_id = created.json()["id"]
    types = [e["type"] for e in client.get(f"/jobs/{job_id}/events").json()["items"]]
    assert types == ["job.queued", "run.handoff_pending"]
    retried = client.post("/jobs", json=spec, headers={"Idempotency-Key": "k1"})
    assert (retried.status_code, retried.json()["id"], retried.json()["status"]) == (200, job_id, "queued")
    assert client.get("/health").json()["broker"].startswith("unavailable")

    monkeypatch.setenv("TRAINDOCK_BROKER_URL", REDIS_URL)
    reset_caches()
    with session_scope() as session:
        now = database_now(session)
    assert send_unsent(now) == [_run_id(job_id)]
    assert [m["headers"]["id"] for m in queued_messages(backend)] == [f"run-{_run_id(job_id)}"]


def _run_id(job_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(Run.id).where(Run.job_id == job_id))


def test_a_message_the_broker_lost_is_sent_again_once(backend, client, dataset):
    if backend.name != "postgres":
        pytest.skip("the filesystem broker's queue is a folder: it cannot forget it")
    job_id = client.post("/jobs", json=make_spec(dataset["id"])).json()["id"]
    with session_scope() as session:
        now = database_now(session)
    assert resend_lost(now) == []  # the message is still there
    redis.Redis.from_url(REDIS_URL).delete("gpu")  # what a restart without persistence does
    assert resend_lost(now) == [_run_id(job_id)]
    assert resend_lost(now) == []  # never piles up
    assert len(queued_messages(backend)) == 1


def test_api_answers_503_with_retry_after_while_the_database_is_unreachable(backend, monkeypatch):
    if backend.name != "postgres":
        pytest.skip("SQLite is a file: it is never unreachable")
    key = issue("acme")
    monkeypatch.setenv("TRAINDOCK_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/x")
    reset_caches()
    with TestClient(create_app(), headers=authorized(key), raise_server_exceptions=False) as client:
        for answer in (client.get("/jobs"), client.post("/jobs", json=make_spec(1))):
            assert answer.status_code == 503 and answer.headers["retry-after"].isdigit()
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["database"].startswith("unavailable")
        assert health.json()["broker"] == "ok"


def test_sweep_removes_what_no_live_upload_holds_and_no_row_owns(backend, client, dataset):
    folder = get_settings().datasets_dir
    dead = folder / "upload-dead.part"  # its API was killed mid-upload
    live = folder / "upload-live.part"  # an upload in progress
    orphan = folder / "999.jsonl"  # renamed, but its row never committed
    for path in (dead, live, orphan):
        path.write_text("{}\n")
    held = os.open(live, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        removed = sweep_dataset_files(get_settings())
    finally:
        os.close(held)
    assert sorted(p.name for p in removed) == ["999.jsonl", "upload-dead.part"]
    assert sorted(p.name for p in folder.iterdir()) == [f"{dataset['id']}.jsonl", "upload-live.part"]


def test_heartbeats_are_written_and_aged_by_the_database_servers_clock(backend):
    """A worker host's clock, ahead or behind, never enters a heartbeat: PostgreSQL's now() is the
    transaction's start on the server, so the written heartbeat equals it exactly."""
    if backend.name != "postgres":
        pytest.skip("SQLite is embedded: every process that uses it shares one host clock")
    from sqlalchemy import func

    from db import lifecycle
    from db.runs import beat, heartbeat_cutoff
    from db.tenants import get_or_create_tenant

    with session_scope() as session:
        tenant = get_or_create_tenant(session, "clock")
        job = lifecycle.create_job(session, tenant_id=tenant.id, spec=make_spec(1), dataset_id=None, queue="gpu", name=None)
        session.flush()
        run_id = job.runs[0].id
        beat(session, run_id)
        server_now = session.scalar(select(func.now()))
        assert session.scalar(select(Run.heartbeat_at).where(Run.id == run_id)) == server_now
        assert (server_now - heartbeat_cutoff(session, 60)).total_seconds() == 60
