"""Webhooks on both backends: endpoints through the unchanged `openai` client and the native API,
deliveries of real job state changes to a real HTTP receiver, verified by the client's
`webhooks.unwrap`; retries with backoff, order per job, giving up, lost sends, the URL rules
(SSRF) at save and at send time, secrets shown once and rotated, tenant isolation.

The delivery function here is the one the Celery task runs (worker/webhooks.py deliver); the
real worker process sends them in tests/e2e/test_webhooks.py."""

import json
import time
from datetime import timedelta

import httpx
import openai
import pytest
from openai import OpenAI
from sqlalchemy import select, update

from api.app import create_app
from db.engine import session_scope
from db.models import WebhookDelivery, utcnow
from db.webhook_deliveries import due_deliveries
from tests.conftest import reset_caches
from tests.integration.conftest import ALPACA_ROWS, authorized, issue, jsonl
from tests.integration.openai_server import serve
from tests.webhook_receiver import receiving
from worker.webhooks import deliver

RETRY_BASE_S = 0.2


@pytest.fixture
def receiver():
    with receiving() as running:
        yield running


@pytest.fixture
def server(backend, monkeypatch):
    monkeypatch.setenv("TRAINDOCK_WEBHOOK_ALLOW_PRIVATE_URLS", "true")  # the receiver is on loopback
    monkeypatch.setenv("TRAINDOCK_WEBHOOK_RETRY_BASE_S", str(RETRY_BASE_S))
    monkeypatch.setenv("TRAINDOCK_WEBHOOK_TIMEOUT_S", "1")
    reset_caches()
    key = issue("acme")
    with serve(create_app()) as url:
        yield type("Server", (), {"url": url, "key": key})


@pytest.fixture
def client(server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0)


def native(server, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=authorized(key or server.key), **kwargs)


def queued_job(client: OpenAI) -> str:
    training = client.files.create(file=("train.jsonl", jsonl(ALPACA_ROWS)), purpose="fine-tune")
    return client.fine_tuning.jobs.create(model="acme/tiny-llama", training_file=training.id).id


def deliver_due() -> list[str]:
    """One round of what the sender does: every sendable delivery, once."""
    with session_scope() as session:
        due = due_deliveries(session, utcnow() + timedelta(days=1))
    return [deliver(delivery_id) for delivery_id in due]


def deliveries() -> list[WebhookDelivery]:
    with session_scope() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def set_setting(monkeypatch, name: str, value: str) -> None:
    """For the sender (this process); the API's settings were read when it started."""
    from traindock.settings import get_settings

    monkeypatch.setenv(name, value)
    get_settings.cache_clear()


# ---- Endpoints -------------------------------------------------------------------------------

def test_the_openai_client_manages_endpoints_and_the_secret_is_shown_once(client, receiver):
    created = client.webhooks.create(url=receiver.url, event_types=["fine_tuning.job.succeeded"], name="ci")
    assert created.id.startswith("we-") and created.object == "webhook_endpoint"
    assert created.signing_secret.startswith("whsec_") and created.signing_secret_hint.endswith(created.signing_secret[-4:])
    shown = client.webhooks.retrieve(created.id)
    assert "signing_secret" not in shown.model_dump() and shown.signing_secret_hint == created.signing_secret_hint
    assert created.signing_secret not in client.with_raw_response.webhooks.retrieve(created.id).text
    assert [e.id for e in client.webhooks.list()] == [created.id]

    updated = client.webhooks.update(created.id, event_types=["fine_tuning.job.failed", "fine_tuning.job.cancelled"],
                                     name="renamed")
    assert (updated.name, updated.event_types, updated.url) == ("renamed", ["fine_tuning.job.failed",
                                                                            "fine_tuning.job.cancelled"], receiver.url)
    assert "fine_tuning.job.succeeded" in client.webhooks.event_types.list().data

    result = client.webhooks.test(created.id, event_type="fine_tuning.job.succeeded")
    assert (result.status_code, result.success, result.webhook_endpoint_id) == (200, True, created.id)
    [sample] = receiver.requests
    event = client.webhooks.unwrap(sample.body, sample.headers, secret=created.signing_secret)
    assert (event.type, event.data.id) == ("fine_tuning.job.succeeded", "ftjob-test")

    rotated = client.webhooks.rotate_secret(created.id)
    assert rotated.signing_secret != created.signing_secret
    client.webhooks.test(created.id, event_type="fine_tuning.job.failed")
    after = receiver.wait_for(2)[1]
    assert client.webhooks.unwrap(after.body, after.headers, secret=rotated.signing_secret).type == "fine_tuning.job.failed"
    with pytest.raises(openai.InvalidWebhookSignatureError):  # the rotation changed the signature
        client.webhooks.unwrap(after.body, after.headers, secret=created.signing_secret)

    kept = client.webhooks.rotate_secret(created.id, keep_old_secret_active_for_24_hours=True)
    client.webhooks.test(created.id, event_type="fine_tuning.job.cancelled")
    both = receiver.wait_for(3)[2]
    for secret in (rotated.signing_secret, kept.signing_secret):  # either verifies for 24 hours
        assert client.webhooks.unwrap(both.body, both.headers, secret=secret).type == "fine_tuning.job.cancelled"

    deleted = client.webhooks.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "webhook_endpoint.deleted")
    with pytest.raises(openai.NotFoundError):
        client.webhooks.retrieve(created.id)


def test_the_native_api_manages_endpoints_and_refuses_unknown_event_types(server, receiver):
    created = native(server, "POST", "/webhook_endpoints",
                     json={"url": receiver.url, "event_types": ["job.running", "checkpoint.saved"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["event_types"] == ["fine_tuning.job.running", "fine_tuning.job.checkpoint.saved"]
    assert endpoint["signing_secret"].startswith("whsec_")
    shown = native(server, "GET", f"/webhook_endpoints/{endpoint['id']}").json()
    assert "signing_secret" not in shown and endpoint["signing_secret"] not in json.dumps(shown)
    patched = native(server, "PATCH", f"/webhook_endpoints/{endpoint['id']}", json={"event_types": ["job.paused"]})
    assert patched.json()["event_types"] == ["fine_tuning.job.paused"]
    unknown = native(server, "POST", "/webhook_endpoints", json={"url": receiver.url, "event_types": ["job.lunch"]})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"][:2] == ["body", "event_types"]
    assert "unknown event type 'job.lunch'" in unknown.text
    assert native(server, "DELETE", f"/webhook_endpoints/{endpoint['id']}").status_code == 204
    assert native(server, "GET", f"/webhook_endpoints/{endpoint['id']}").status_code == 404


# ---- Deliveries --------------------------------------------------------------------------------

def test_a_cancelled_job_is_delivered_signed_and_unwrap_verifies_it(client, server, receiver):
    endpoint = client.webhooks.create(url=receiver.url, event_types=["fine_tuning.job.cancelled"], name="ci")
    job_id = queued_job(client)
    assert deliveries() == []  # nothing subscribed happened yet
    client.fine_tuning.jobs.cancel(job_id)
    [pending] = deliveries()  # written with the event, in its transaction
    assert (pending.status, pending.event_type, pending.attempts) == ("pending", "fine_tuning.job.cancelled", [])

    assert deliver_due() == ["succeeded"]
    [request] = receiver.requests
    assert request.headers["webhook-id"] == f"msg_{pending.id}"
    event = client.webhooks.unwrap(request.body, request.headers, secret=endpoint.signing_secret)
    assert (event.type, event.object, event.data.id) == ("fine_tuning.job.cancelled", "event", job_id)
    assert event.id.startswith("evt_") and abs(event.created_at - time.time()) < 60

    tampered = request.body.replace(b"cancelled", b"succeeded")
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.unwrap(tampered, request.headers, secret=endpoint.signing_secret)
    forged = {**request.headers, "webhook-signature": "v1," + "A" * 44}
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.unwrap(request.body, forged, secret=endpoint.signing_secret)

    page = client.get(f"/webhook_endpoints/{endpoint.id}/deliveries", cast_to=object)
    [logged] = page["data"]
    assert (logged["status"], logged["fine_tuning_job_id"], logged["id"]) == ("succeeded", job_id, f"msg_{pending.id}")
    assert [attempt["status_code"] for attempt in logged["attempts"]] == [200]
    assert deliver_due() == []  # delivered once


def test_failed_attempts_back_off_and_a_jobs_deliveries_keep_their_order(server, receiver):
    endpoint = native(server, "POST", "/webhook_endpoints",
                      json={"url": receiver.url, "event_types": ["job.paused", "fine_tuning.job.cancelled"]}).json()
    dataset = native(server, "POST", "/datasets", files={"file": ("a.jsonl", jsonl(ALPACA_ROWS))}).json()
    job = native(server, "POST", "/jobs", json={"base_model": "acme/tiny-llama", "dataset_id": dataset["id"]}).json()
    assert native(server, "POST", f"/jobs/{job['id']}/pause").status_code == 200
    assert native(server, "POST", f"/jobs/{job['id']}/cancel").status_code == 200
    receiver.answers = [500, 503]  # the first two attempts fail

    rounds = []
    deadline = time.monotonic() + 20
    while len(receiver.requests) < 4:
        assert time.monotonic() < deadline, receiver.requests
        if outcome := deliver_due():
            rounds.append(outcome)
        time.sleep(0.05)
    # One delivery at a time: the cancel waited until the pause was through.
    assert rounds == [["pending"], ["pending"], ["succeeded"], ["succeeded"]]
    types = [json.loads(request.body)["type"] for request in receiver.requests]
    assert types == ["fine_tuning.job.paused"] * 3 + ["fine_tuning.job.cancelled"]
    assert len({request.headers["webhook-id"] for request in receiver.requests[:3]}) == 1  # the same message

    paused, cancelled = deliveries()
    assert [attempt["status_code"] for attempt in paused.attempts] == [500, 503, 200]
    gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:3])]
    assert gaps[0] >= RETRY_BASE_S * 0.9 and gaps[1] >= 2 * RETRY_BASE_S * 0.9  # 0.2 s, then 0.4 s
    logged = native(server, "GET", f"/webhook_endpoints/{endpoint['id']}/deliveries").json()["items"]
    assert [(d["id"], d["status"], len(d["attempts"])) for d in logged] == [(cancelled.id, "succeeded", 1),
                                                                            (paused.id, "succeeded", 3)]
    assert logged[1]["attempts"][0]["error"] == "the receiver answered 500"


def test_a_delivery_is_given_up_after_the_retry_period_and_the_next_one_goes(client, receiver, monkeypatch):
    set_setting(monkeypatch, "TRAINDOCK_WEBHOOK_RETRY_FOR_S", "0.3")
    client.webhooks.create(url=receiver.url, event_types=["fine_tuning.job.cancelled", "fine_tuning.job.paused"],
                           name="ci")
    job_id = queued_job(client)
    client.fine_tuning.jobs.pause(job_id)
    client.fine_tuning.jobs.cancel(job_id)
    receiver.answers = [500] * 100
    deadline = time.monotonic() + 10
    while deliveries()[0].status == "pending":
        assert time.monotonic() < deadline
        deliver_due()
        time.sleep(0.05)
    paused, cancelled = deliveries()
    assert paused.status == "failed" and paused.finished_at is not None and len(paused.attempts) >= 2
    assert cancelled.status == "pending"  # its turn now
    receiver.answers = []
    assert deliver_due() == ["succeeded"]


def test_a_delivery_whose_send_was_lost_is_sent_again(client, receiver):
    client.webhooks.create(url=receiver.url, event_types=["fine_tuning.job.cancelled"], name="ci")
    client.fine_tuning.jobs.cancel(queued_job(client))
    [delivery] = deliveries()
    assert delivery.dispatched_at is not None  # the broker took the message after the commit
    with session_scope() as session:
        now = utcnow()
        assert due_deliveries(session, now - timedelta(seconds=30)) == []  # a sender may be about to take it
        session.execute(update(WebhookDelivery).values(dispatched_at=now - timedelta(seconds=60)))
        assert due_deliveries(session, now - timedelta(seconds=30)) == [delivery.id]  # lost: send again
        session.execute(update(WebhookDelivery).values(dispatched_at=None))
        assert due_deliveries(session, now - timedelta(seconds=30)) == [delivery.id]  # never sent


# ---- URL rules (SSRF) ----------------------------------------------------------------------------

REFUSED = {
    "https://127.0.0.1/hook": "loopback", "https://localhost:8443/hook": "loopback",
    "https://10.1.2.3/hook": "private", "https://172.16.5.4/hook": "private", "https://172.31.255.1/hook": "private",
    "https://192.168.1.10/hook": "private", "https://169.254.1.1/hook": "link-local",
    "https://169.254.169.254/latest/meta-data": "metadata", "https://[::1]/hook": "loopback",
    "https://[fc00::1]/hook": "private", "https://[fd12:3456::1]/hook": "private",
    "https://[fe80::1]/hook": "link-local", "https://[::ffff:10.0.0.1]/hook": "private",
    "http://93.184.215.14/hook": "must use https", "ftp://93.184.215.14/x": "https://",
    "https://user:pw@93.184.215.14/": "password",
}


def test_urls_reaching_private_networks_are_refused_with_422_naming_url(server, backend, monkeypatch):
    monkeypatch.setenv("TRAINDOCK_WEBHOOK_ALLOW_PRIVATE_URLS", "false")
    reset_caches()
    key = issue("strict")
    with serve(create_app()) as url:
        strict = type("Server", (), {"url": url, "key": key})
        for refused, reason in REFUSED.items():
            answer = native(strict, "POST", "/webhook_endpoints", json={"url": refused, "event_types": ["job.failed"]})
            assert answer.status_code == 422, (refused, answer.text)
            [problem] = answer.json()["detail"]
            assert problem["loc"] == ["body", "url"] and reason in problem["msg"], (refused, problem)
        v1 = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.UnprocessableEntityError) as refused_v1:
            v1.webhooks.create(url="https://169.254.169.254/", event_types=["fine_tuning.job.failed"], name="x")
        assert refused_v1.value.body["param"] == "url" and "metadata" in refused_v1.value.message
        public = native(strict, "POST", "/webhook_endpoints",
                        json={"url": "https://93.184.215.14/hook", "event_types": ["job.failed"]})
        assert public.status_code == 201, public.text
        endpoint = public.json()["id"]
        moved = native(strict, "PATCH", f"/webhook_endpoints/{endpoint}", json={"url": "https://10.0.0.1/"})
        assert moved.status_code == 422 and moved.json()["detail"][0]["loc"] == ["body", "url"]


def test_the_address_is_checked_again_at_send_time(client, receiver, monkeypatch):
    """An endpoint saved while its name pointed elsewhere (DNS rebinding): the send re-resolves and refuses."""
    client.webhooks.create(url=receiver.url, event_types=["fine_tuning.job.cancelled"], name="ci")
    client.fine_tuning.jobs.cancel(queued_job(client))
    set_setting(monkeypatch, "TRAINDOCK_WEBHOOK_ALLOW_PRIVATE_URLS", "false")
    assert deliver_due() == ["pending"]
    [delivery] = deliveries()
    assert "refused" in delivery.attempts[0]["error"] and "must use https" in delivery.attempts[0]["error"]
    assert receiver.requests == []


def test_redirects_are_not_followed_and_a_slow_receiver_is_cut_off(client, receiver):
    client.webhooks.create(url=receiver.url, event_types=["fine_tuning.job.cancelled"], name="ci")
    client.fine_tuning.jobs.cancel(queued_job(client))
    receiver.answers, receiver.location = [302], receiver.url.replace("/hook", "/elsewhere")
    assert deliver_due() == ["pending"]
    assert [request.path for request in receiver.requests] == ["/hook"]
    assert deliveries()[0].attempts[0] == {**deliveries()[0].attempts[0], "status_code": 302,
                                           "error": "redirects are not followed"}
    receiver.delay_s = 3  # TRAINDOCK_WEBHOOK_TIMEOUT_S is 1
    time.sleep(RETRY_BASE_S)
    started = time.monotonic()
    assert deliver_due() == ["pending"]
    assert time.monotonic() - started < 2.5
    assert "timed out after 1 s" in deliveries()[0].attempts[1]["error"]


# ---- Tenants -------------------------------------------------------------------------------------

def test_endpoints_and_deliveries_are_per_tenant(client, server, receiver):
    mine = client.webhooks.create(url=receiver.url, event_types=["fine_tuning.job.cancelled"], name="acme")
    other_key = issue("globex")
    other = OpenAI(base_url=f"{server.url}/v1", api_key=other_key, max_retries=0)
    assert other.webhooks.list().data == []
    for call in (lambda: other.webhooks.retrieve(mine.id), lambda: other.webhooks.delete(mine.id),
                 lambda: other.webhooks.update(mine.id, url="http://127.0.0.1:1/x"),
                 lambda: other.webhooks.rotate_secret(mine.id),
                 lambda: other.webhooks.test(mine.id, event_type="fine_tuning.job.failed"),
                 lambda: other.get(f"/webhook_endpoints/{mine.id}/deliveries", cast_to=object)):
        with pytest.raises(openai.NotFoundError):
            call()
    number = mine.id.split("-")[1]
    for method, path in (("GET", f"/webhook_endpoints/{number}"), ("DELETE", f"/webhook_endpoints/{number}"),
                         ("GET", f"/webhook_endpoints/{number}/deliveries")):
        assert native(server, method, path, key=other_key).status_code == 404

    other.fine_tuning.jobs.cancel(queued_job(other))  # the other tenant's job: not for my endpoint
    assert deliveries() == [] and receiver.requests == []
    client.fine_tuning.jobs.cancel(queued_job(client))
    assert deliver_due() == ["succeeded"] and len(receiver.requests) == 1
    assert client.webhooks.retrieve(mine.id).url == receiver.url
