"""The job lifecycle (db/lifecycle.py): its transition table, pause, and the outbox that sends a
run only after its transaction commits, and again when that send never happened."""

import pytest
from sqlalchemy import func, select

from db import lifecycle
from db.engine import session_scope
from db.hooks import AFTER_COMMIT
from db.models import Event, Job, Run, utcnow
from db.outbox import send_unsent
from db.status import JobStatus
from db.tenants import get_or_create_tenant
from tests.integration.conftest import make_spec
from tests.integration.test_jobs import queued_messages

STATES = [None, *JobStatus]


def new_job(session) -> Job:
    tenant = get_or_create_tenant(session, "lifecycle")
    return lifecycle.create_job(session, tenant_id=tenant.id, spec=make_spec(1), dataset_id=None,
                                queue="gpu", name=None)


def event_count(session, job_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Event).where(Event.job_id == job_id))


def test_every_allowed_change_works_and_every_other_one_raises_without_writing(backend):
    with session_scope() as session:
        job = new_job(session)
        run = job.runs[0]
        for source in STATES[1:]:
            for target in JobStatus:
                job.status = source
                session.flush()
                before = event_count(session, job.id)
                if target in lifecycle.TRANSITIONS[source]:
                    event = lifecycle.change_status(session, job, target, "test", run=run)
                    session.flush()
                    assert job.status == target
                    assert (event.type, event.data["from"], event.data["to"]) == (f"job.{target}", source, target)
                    assert event_count(session, job.id) == before + 1
                else:
                    with pytest.raises(lifecycle.IllegalTransition):
                        lifecycle.change_status(session, job, target, "test", run=run)
                    assert job.status == source and not session.dirty and not session.new
                    assert event_count(session, job.id) == before
        session.rollback()  # nothing of this is sent


def test_a_new_job_can_only_be_queued():
    assert lifecycle.TRANSITIONS[None] == {JobStatus.QUEUED}
    # every state is reachable and every state but the terminal ones leads somewhere
    reachable = set().union(*lifecycle.TRANSITIONS.values())
    assert reachable == set(JobStatus)
    assert set(lifecycle.TRANSITIONS) == set(STATES)


def test_the_outbox_sends_after_commit_and_nothing_on_rollback(backend):
    with session_scope() as session:
        new_job(session)
        assert queued_messages(backend) == []  # not before the commit
    [message] = queued_messages(backend)
    with pytest.raises(RuntimeError), session_scope() as session:
        new_job(session)
        raise RuntimeError("the request failed")
    assert len(queued_messages(backend)) == 1
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1
        assert session.scalar(select(Run.dispatched_at)) is not None


def test_a_run_committed_but_never_sent_is_sent_by_the_recovery(backend):
    with session_scope() as session:
        job_id = new_job(session).id
        session.info.pop(AFTER_COMMIT)  # the process dies between the commit and the send
    assert queued_messages(backend) == []
    with session_scope() as session:
        [run_id] = session.scalars(select(Run.id).where(Run.job_id == job_id, Run.dispatched_at.is_(None)))
    assert send_unsent(created_before=utcnow().replace(year=2000)) == []  # not yet old enough
    assert send_unsent(created_before=utcnow()) == [run_id]
    [message] = queued_messages(backend)
    assert message["headers"]["id"] == f"run-{run_id}"
    assert send_unsent(created_before=utcnow()) == []  # sent once


def test_pause_and_resume_of_a_queued_job(client, backend, dataset):
    job = client.post("/jobs", json=make_spec(dataset["id"])).json()
    paused = client.post(f"/jobs/{job['id']}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert [a["status"] for a in paused.json()["attempts"]] == ["paused"]
    assert client.post(f"/jobs/{job['id']}/pause").json()["status"] == "paused"  # idempotent
    assert client.delete(f"/datasets/{dataset['id']}").status_code == 409  # it will need its data

    resumed = client.post(f"/jobs/{job['id']}/resume")
    assert resumed.status_code == 202, resumed.text
    assert [(a["status"], a["reason"], a["resume_step"]) for a in resumed.json()["attempts"]] == [
        ("paused", "submitted", None), ("queued", "resumed", None)]
    assert len(queued_messages(backend)) == 2  # the first attempt's message is refused by its claim

    assert client.post(f"/jobs/{job['id']}/pause").json()["status"] == "paused"
    assert client.post(f"/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    refused = client.post(f"/jobs/{job['id']}/pause")
    assert refused.status_code == 409 and "only queued or running jobs" in refused.json()["detail"]
    events = client.get(f"/jobs/{job['id']}/events").json()["items"]
    assert [e["type"] for e in events if e["type"].startswith("job.")] == [
        "job.queued", "job.paused", "job.queued", "job.paused", "job.cancelled"]


def test_a_stale_delivery_of_a_paused_run_is_not_started(backend):
    with session_scope() as session:
        job = new_job(session)
        run_id = job.runs[0].id
        lifecycle.request_pause(session, job.id)
    with session_scope() as session:
        assert lifecycle.claim_run(session, run_id, "w1") is None
        assert session.get(Job, job.id).status == JobStatus.PAUSED
    with session_scope() as session:
        types = list(session.scalars(select(Event.type).where(Event.job_id == job.id).order_by(Event.id)))
    assert types == ["job.queued", "job.paused", "run.delivery_ignored"]
