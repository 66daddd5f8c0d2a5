"""Who may do what, on both backends where a database is involved: bearer API keys on every
endpoint, keys stored only as hashes, the `traindock keys` commands and the first key of
`traindock up`; tenant isolation; what a spec may not do (run a model's code, carry a Hub token)
and the server's Hub token never shown."""

import asyncio
import hashlib
import os
import re
import stat
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from api.app import create_app
from api.auth import PUBLIC_PATHS
from tests.conftest import REPO
from tests.integration.conftest import ALPACA_ROWS, authorized, issue, jsonl, make_spec

DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
UI = {"/ui", "/ui/", "/ui/{name}"}  # the dashboard's files: every call the page makes sends the key
KNOWN = {"/health", "/schema/job-spec", "/datasets", "/datasets/{dataset_id}", "/jobs", "/jobs/validate",
         "/jobs/{job_id}", "/jobs/{job_id}/events", "/jobs/{job_id}/metrics", "/jobs/{job_id}/checkpoints",
         "/jobs/{job_id}/cancel", "/jobs/{job_id}/resume"}


def routes(app) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, routers included (FastAPI >= 0.16x
    keeps included routers as one entry of app.routes; iter_route_contexts flattens them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        contexts = app.routes
    else:
        contexts = list(iter_route_contexts(app.routes))
    found = set()
    for route in contexts:
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, route.path_format))
    return sorted(found)


def filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_but_health_the_docs_and_the_dashboard_needs_a_key(sqlite_backend):
    app = create_app()
    served = routes(app)
    assert KNOWN <= {path for _, path in served}, served  # the enumeration sees every router
    with TestClient(app) as anonymous:
        public = set()
        for method, path in served:
            response = anonymous.request(method, filled(path))
            if response.status_code != 401:
                public.add(path)
            else:
                assert response.headers["www-authenticate"] == "Bearer", (method, path)
        assert public == DOCS | {"/health"} | UI
        assert PUBLIC_PATHS | UI == public
        for path in public - {"/docs/oauth2-redirect", "/ui/{name}"}:
            assert anonymous.get(path).status_code == 200, path


def revoked_key(tenant: str) -> str:
    from db.engine import session_scope
    from db.tenants import revoke_key

    key = issue(tenant)
    with session_scope() as session:
        assert revoke_key(session, key.split("_")[1])
    return key


def bad_credentials(valid: str, revoked: str) -> dict[str, dict[str, str | bytes]]:
    _, key_id, secret = valid.split("_", 2)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    return {
        "missing header": {},
        "empty header": {"Authorization": ""},
        "basic scheme": {"Authorization": "Basic YWNtZTpzZWNyZXQ="},
        "token scheme": {"Authorization": f"Token {valid}"},
        "bare key, no scheme": {"Authorization": valid},
        "scheme without key": {"Authorization": "Bearer"},
        "scheme and blanks": {"Authorization": "Bearer    "},
        "malformed key": {"Authorization": "Bearer not-a-key"},
        "malformed prefix": {"Authorization": f"Bearer xx_{key_id}_{secret}"},
        "key id only": {"Authorization": f"Bearer td_{key_id}"},
        "overlong key": {"Authorization": f"Bearer td_{'a' * 5000}_{'b' * 5000}"},
        "NUL in the key": {"Authorization": f"Bearer td_{key_id[:6]}\x00{key_id[6:]}_{secret}"},
        "non-ASCII key": {"Authorization": f"Bearer td_{key_id}_{secret[:-1]}\u00e9".encode("latin-1")},
        "unknown key": {"Authorization": f"Bearer td_0123456789ab_{secret}"},
        "right id, wrong secret": {"Authorization": f"Bearer td_{key_id}_{flipped}"},
        "key with junk after it": {"Authorization": f"Bearer {valid} extra"},
        "revoked key": {"Authorization": f"Bearer {revoked}"},
    }


def test_bad_credentials_are_401_with_www_authenticate_on_every_endpoint(backend):
    valid, revoked = issue("acme"), revoked_key("acme")
    app = create_app()
    guarded = [(m, filled(p)) for m, p in routes(app) if p not in PUBLIC_PATHS | UI]
    assert len(guarded) >= 13
    with TestClient(app) as anonymous:
        for case, headers in bad_credentials(valid, revoked).items():
            for method, path in guarded:
                response = anonymous.request(method, path, headers=headers)
                assert response.status_code == 401, (case, method, path, response.text)
                assert response.headers["www-authenticate"] == "Bearer", (case, method, path)
                assert "key" in response.json()["detail"], (case, method, path)
        assert anonymous.get("/health").status_code == 200
        # the valid key gets past authentication everywhere (404: nothing with id 1 yet); the
        # tenant's live stream never ends, so its authentication is tested in test_stream.py
        for method, path in guarded:
            if path == "/jobs/stream":
                continue
            response = anonymous.request(method, path, headers=authorized(valid))
            assert response.status_code != 401, (method, path, response.text)


def test_a_valid_key_works_and_names_its_tenant(backend):
    key = issue("acme")
    with TestClient(create_app(), headers=authorized(key)) as client:
        created = client.post("/datasets", files={"file": ("d.jsonl", jsonl([{"text": "hi"}]))})
        assert created.status_code == 201, created.text
        assert [d["id"] for d in client.get("/datasets").json()["items"]] == [created.json()["id"]]
        assert client.get("/schema/job-spec").status_code == 200
        # the scheme is case-insensitive, as RFC 7235 has it
        assert client.get("/jobs", headers={"Authorization": f"bearer {key}"}).status_code == 200
        from db.engine import session_scope
        from db.models import Dataset, Tenant

        with session_scope() as session:
            dataset = session.get(Dataset, created.json()["id"])
            assert session.get(Tenant, dataset.tenant_id).name == "acme"


def test_revoking_a_key_locks_it_out_within_the_cache_time_and_leaves_other_keys(backend, key_clock):
    from db.engine import session_scope
    from db.tenants import revoke_key

    first, second = issue("acme"), issue("acme")
    ttl = key_clock.cache_time()
    assert ttl > 0
    with TestClient(create_app()) as client:
        assert client.get("/jobs", headers=authorized(first)).status_code == 200
        # A valid key outlives its cache entry: it is checked again, not refused.
        key_clock.advance(ttl + 1)
        assert client.get("/jobs", headers=authorized(first)).status_code == 200
        with session_scope() as session:
            assert revoke_key(session, first.split("_")[1])
            assert not revoke_key(session, first.split("_")[1])  # already revoked
            assert not revoke_key(session, "feedfeedfeed")
        key_clock.advance(ttl / 2)
        # Within the cache time the process still trusts what it verified (the documented delay)...
        assert client.get("/jobs", headers=authorized(first)).status_code == 200
        key_clock.advance(ttl / 2 + 0.01)
        # ...and once it has passed, the revocation holds.
        assert client.get("/jobs", headers=authorized(first)).status_code == 401
        assert client.get("/jobs", headers=authorized(second)).status_code == 200
        key_clock.advance(ttl + 1)
        assert client.get("/jobs", headers=authorized(first)).status_code == 401


def test_with_the_cache_off_a_revocation_holds_at_once(backend, monkeypatch):
    from db.engine import session_scope
    from db.tenants import revoke_key
    from traindock.settings import get_settings

    monkeypatch.setenv("TRAINDOCK_API_KEY_CACHE_S", "0")
    get_settings.cache_clear()
    key = issue("acme")
    with TestClient(create_app()) as client:
        assert client.get("/jobs", headers=authorized(key)).status_code == 200
        with session_scope() as session:
            assert revoke_key(session, key.split("_")[1])
        assert client.get("/jobs", headers=authorized(key)).status_code == 401


def dump_database() -> str:
    """Every row of every table the database holds (asked of the database, not of the models)."""
    from db.engine import get_engine

    engine = get_engine()
    rows = []
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            rows += [repr(tuple(row)) for row in connection.execute(text(f'SELECT * FROM "{table}"'))]
    return "\n".join(rows)


def test_keys_are_stored_only_as_hashes(backend):
    keys = [issue("acme"), issue("acme"), issue("globex")]
    with TestClient(create_app(), headers=authorized(keys[0])) as client:
        client.post("/datasets", files={"file": ("d.jsonl", jsonl([{"text": "hi"}]))})
    from db.engine import get_engine

    assert {"api_keys", "tenants", "datasets"} <= set(inspect(get_engine()).get_table_names())
    dump = dump_database()
    for key in keys:
        _, key_id, secret = key.split("_", 2)
        assert key_id in dump  # the public part is stored, so the row can be found
        assert secret not in dump
        assert key not in dump
        assert hashlib.sha256(key.encode()).hexdigest() in dump


# The `traindock keys` commands, as a real subprocess of the CLI ------------------------------------


def cli(backend, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}
    env.update(backend.env)
    return subprocess.run([sys.executable, "-m", "traindock.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_keys_create_list_and_revoke_through_the_cli(sqlite_backend, key_clock):
    created = cli(sqlite_backend, "keys", "create", "--tenant", "acme")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    key_id = secret.split("_")[1]
    assert secret.startswith(f"td_{key_id}_") and len(secret) > 40
    assert key_id in created.stdout.splitlines()[0] and "acme" in created.stdout
    other = cli(sqlite_backend, "keys", "create", "--tenant", "globex").stdout.strip().splitlines()[-1]

    with TestClient(create_app()) as client:
        assert client.get("/jobs", headers=authorized(secret)).status_code == 200

        listed = cli(sqlite_backend, "keys", "list")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.strip().splitlines()
        assert len(lines) == 2
        assert key_id in lines[0] and "acme" in lines[0] and "active" in lines[0]
        assert other.split("_")[1] in lines[1] and "globex" in lines[1]
        for shown in (secret, other):
            assert shown.split("_", 2)[2] not in listed.stdout + listed.stderr

        revoked = cli(sqlite_backend, "keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        key_clock.advance(key_clock.cache_time())
        assert client.get("/jobs", headers=authorized(secret)).status_code == 401
        assert client.get("/jobs", headers=authorized(other)).status_code == 200
        listed = cli(sqlite_backend, "keys", "list").stdout
        assert "revoked" in next(line for line in listed.splitlines() if key_id in line)

        again = cli(sqlite_backend, "keys", "revoke", key_id)
        assert again.returncode != 0 and key_id in again.stderr
        unknown = cli(sqlite_backend, "keys", "revoke", "nosuchkey")
        assert unknown.returncode != 0 and "nosuchkey" in unknown.stderr


def test_ensure_first_key_makes_one_key_once_in_a_private_file(sqlite_backend, capsys):
    from traindock.cli.keys import ensure_first_key, key_file, saved_key
    from traindock.settings import get_settings

    settings = get_settings()
    path = key_file(settings)
    assert not path.exists()
    ensure_first_key(settings)
    printed = capsys.readouterr().out
    secret = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret in printed and str(path) in printed
    assert saved_key(settings) == secret
    with TestClient(create_app()) as client:
        assert client.get("/jobs", headers=authorized(secret)).status_code == 200

    before = path.stat()
    ensure_first_key(settings)
    assert capsys.readouterr().out == ""
    assert path.read_text().strip() == secret
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    from db.engine import session_scope
    from db.tenants import list_keys

    with session_scope() as session:
        assert len(list_keys(session)) == 1


def test_first_key_file_is_private_even_when_a_readable_one_was_there(sqlite_backend, capsys):
    """A stale api-key file (a wiped database, a copied data dir) must not keep its wider mode."""
    from traindock.cli.keys import ensure_first_key, key_file
    from traindock.settings import get_settings

    settings = get_settings()
    path = key_file(settings)
    path.write_text("td_stale_key\n")
    path.chmod(0o644)
    ensure_first_key(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() != "td_stale_key"
    assert path.read_text().strip() in capsys.readouterr().out


# Authentication comes before the body is read ------------------------------------------------------


async def call(app, method: str, path: str, headers: dict[str, str], chunks: list[bytes]):
    """The app over raw ASGI: (status, bytes of the body the app had pulled when it answered)."""
    pulled = 0
    remaining = list(chunks)
    messages = []

    async def receive():
        nonlocal pulled
        if not remaining:
            await asyncio.sleep(0)
            return {"type": "http.disconnect"}
        chunk = remaining.pop(0)
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(remaining)}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "server": ("testserver", 80), "client": ("testclient", 50000),
    }
    await app(scope, receive, send)
    return messages[0]["status"], pulled


BOUNDARY = "traindock-boundary"
UPLOAD = (
    [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'.encode()]
    + [b'{"text": "' + b"x" * 65_000 + b'"}\n'] * 40
    + [f"\r\n--{BOUNDARY}--\r\n".encode()]
)
UPLOAD_HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def anonymous_requests(backend):
    revoked = revoked_key("acme")
    for auth in ({}, {"authorization": f"Bearer {revoked}"}, {"authorization": "Bearer td_0123456789ab_x"}):
        yield "POST", "/datasets", {**UPLOAD_HEADERS, **auth}, UPLOAD
        yield "POST", "/jobs", {"content-type": "application/json", **auth}, [b"{not json"]
        yield "POST", "/jobs/validate", {"content-type": "application/json", **auth}, [b"[1, 2"]


def check_refused_before_the_body(app, backend):
    for method, path, headers, chunks in anonymous_requests(backend):
        status, pulled = asyncio.run(call(app, method, path, headers, chunks))
        assert status == 401, (path, headers, status)
        assert pulled == 0, (path, headers, f"read {pulled} bytes before answering 401")
    assert list((backend.data_dir / "datasets").iterdir()) == []


def test_anonymous_requests_are_refused_before_their_body_is_read(backend):
    check_refused_before_the_body(create_app(), backend)


def test_the_app_gates_every_request_on_its_key(backend):
    app = create_app()
    key = issue("acme")
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/jobs").status_code == 401
        assert client.get("/jobs").headers["www-authenticate"] == "Bearer"
        assert client.get("/jobs", headers=authorized(key)).status_code == 200
        uploaded = client.post("/datasets", headers=authorized(key),
                               files={"file": ("d.jsonl", jsonl([{"text": "hi"}]))})
        assert uploaded.status_code == 201, uploaded.text


# Tenant isolation ------------------------------------------------------------------------------


@pytest.fixture
def tenants(backend):
    """Two tenants' clients on one app: A ('acme') and B ('globex')."""
    app = create_app()
    with TestClient(app, headers=authorized(issue("acme"))) as a, \
            TestClient(app, headers=authorized(issue("globex"))) as b:
        yield a, b


def tenant_id_of(job_id: int) -> int:
    from db.engine import session_scope
    from db.jobs import get_job

    with session_scope() as session:
        return get_job(session, job_id).tenant_id


def give_checkpoint(backend, job_id: int, step: int = 4) -> None:
    """A usable checkpoint (row, folder, trainer_state.json) and a metric point for a job."""
    from db.checkpoints import record_checkpoint
    from db.engine import session_scope
    from db.jobs import get_job
    from db.metrics import record_metric_points

    folder = backend.data_dir / "jobs" / f"tenant-{tenant_id_of(job_id)}" / f"job-{job_id}" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    with session_scope() as session:
        run_id = get_job(session, job_id).runs[-1].id
        record_checkpoint(session, job_id, run_id, step, str(folder), {"loss": 1.5})
        record_metric_points(session, job_id, run_id, [(step, 1.0, {"loss": 1.5})])


def same_message(mine: str, mine_id: int, none: str, none_id: int) -> None:
    assert mine.replace(str(mine_id), "<id>") == none.replace(str(none_id), "<id>"), (mine, none)


def test_another_tenants_things_are_404_and_unchanged(tenants, backend):
    a, b = tenants
    dataset = a.post("/datasets", files={"file": ("a.jsonl", jsonl(ALPACA_ROWS))}).json()
    spare = a.post("/datasets", files={"file": ("spare.jsonl", jsonl(ALPACA_ROWS))}).json()
    queued = a.post("/jobs", json=make_spec(dataset["id"], name="a-queued")).json()
    stopped = a.post("/jobs", json=make_spec(dataset["id"], name="a-stopped")).json()
    assert a.post(f"/jobs/{stopped['id']}/cancel").json()["status"] == "cancelled"
    give_checkpoint(backend, stopped["id"])
    before = {job["id"]: a.get(f"/jobs/{job['id']}").json() for job in (queued, stopped)}
    assert len(a.get(f"/jobs/{stopped['id']}/checkpoints").json()) == 1  # there is something to see
    assert a.get(f"/jobs/{stopped['id']}/metrics").json()["items"]
    missing = 987654

    for job in (queued, stopped):
        for method, suffix in [("GET", ""), ("GET", "/events"), ("GET", "/metrics"), ("GET", "/checkpoints"),
                               ("POST", "/cancel"), ("POST", "/resume")]:
            theirs = b.request(method, f"/jobs/{job['id']}{suffix}")
            nothing = b.request(method, f"/jobs/{missing}{suffix}")
            assert theirs.status_code == nothing.status_code == 404, (method, suffix, theirs.text)
            same_message(theirs.json()["detail"], job["id"], nothing.json()["detail"], missing)
    for dataset_id in (dataset["id"], spare["id"]):
        for method in ("GET", "DELETE"):
            theirs = b.request(method, f"/datasets/{dataset_id}")
            nothing = b.request(method, f"/datasets/{missing}")
            assert theirs.status_code == nothing.status_code == 404, (method, theirs.text)
            same_message(theirs.json()["detail"], dataset_id, nothing.json()["detail"], missing)
    assert b.get("/jobs").json() == {"items": [], "next_cursor": None}
    assert b.get("/jobs", params=[("status", "queued"), ("status", "cancelled")]).json()["items"] == []
    assert b.get("/datasets").json() == {"items": [], "next_cursor": None}

    # A sees everything as it was: the queued job is still queued, nothing resumed, both datasets there
    for job_id, job in before.items():
        assert a.get(f"/jobs/{job_id}").json() == job
    assert a.get(f"/jobs/{queued['id']}").json()["status"] == "queued"
    assert [x["attempt"] for x in a.get(f"/jobs/{stopped['id']}").json()["attempts"]] == [1]
    assert {d["id"] for d in a.get("/datasets").json()["items"]} == {dataset["id"], spare["id"]}
    assert (backend.data_dir / "datasets" / f"{spare['id']}.jsonl").is_file()


def test_another_tenants_dataset_and_job_cannot_be_used_in_a_spec(tenants, backend):
    a, b = tenants
    dataset = a.post("/datasets", files={"file": ("a.jsonl", jsonl(ALPACA_ROWS))}).json()
    stopped = a.post("/jobs", json=make_spec(dataset["id"])).json()
    a.post(f"/jobs/{stopped['id']}/cancel")
    give_checkpoint(backend, stopped["id"])
    # A may resume from it: so B's refusal below is about ownership, nothing else
    assert a.post("/jobs/validate", json=make_spec(dataset["id"], resume_from_checkpoint={
        "job_id": stopped["id"]})).json()["errors"] == []
    own = b.post("/datasets", files={"file": ("b.jsonl", jsonl(ALPACA_ROWS))}).json()
    missing = 987654

    def error(spec, loc):
        for path in ("/jobs", "/jobs/validate"):
            response = b.post(path, json=spec)
            errors = response.json()["detail"] if path == "/jobs" else response.json()["errors"]
            assert response.status_code == (422 if path == "/jobs" else 200), response.text
            [found] = [e for e in errors if e["loc"] == loc]
        return found

    theirs = error(make_spec(dataset["id"]), ["body", "dataset_id"])
    nothing = error(make_spec(missing), ["body", "dataset_id"])
    assert "no dataset" in theirs["msg"] and theirs["type"] == nothing["type"]
    same_message(theirs["msg"], dataset["id"], nothing["msg"], missing)
    report = b.post("/jobs/validate", json=make_spec(dataset["id"])).json()
    assert report["estimates"] is None  # not even A's row count leaks

    theirs = error(make_spec(own["id"], resume_from_checkpoint={"job_id": stopped["id"]}),
                   ["body", "resume_from_checkpoint", "job_id"])
    nothing = error(make_spec(own["id"], resume_from_checkpoint={"job_id": missing}),
                    ["body", "resume_from_checkpoint", "job_id"])
    assert "no job" in theirs["msg"] and theirs["type"] == nothing["type"]
    same_message(theirs["msg"], stopped["id"], nothing["msg"], missing)
    theirs = error(make_spec(own["id"], resume_from_checkpoint={"job_id": stopped["id"], "step": 4}),
                   ["body", "resume_from_checkpoint", "job_id"])
    same_message(theirs["msg"], stopped["id"], nothing["msg"], missing)
    assert b.get("/jobs").json()["items"] == []
    assert [x["attempt"] for x in a.get(f"/jobs/{stopped['id']}").json()["attempts"]] == [1]


def test_idempotency_keys_and_output_names_belong_to_one_tenant(tenants, backend):
    from traindock.paths import job_output_dir
    from traindock.settings import get_settings

    a, b = tenants
    datasets = [c.post("/datasets", files={"file": ("d.jsonl", jsonl(ALPACA_ROWS))}).json() for c in (a, b)]
    headers = {"Idempotency-Key": "shared-key"}
    jobs = []
    for client, dataset in zip((a, b), datasets):
        response = client.post("/jobs", json=make_spec(dataset["id"], output_dir="shared"), headers=headers)
        assert response.status_code == 201, response.text
        jobs.append(response.json())
    assert jobs[0]["id"] != jobs[1]["id"]
    # each tenant's retry replays its own job
    for client, dataset, job in zip((a, b), datasets, jobs):
        again = client.post("/jobs", json=make_spec(dataset["id"], output_dir="shared"), headers=headers)
        assert again.status_code == 200 and again.json()["id"] == job["id"]
    folders = [job_output_dir(get_settings().jobs_dir, tenant_id_of(job["id"]), job["spec"]["output_dir"], job["id"])
               for job in jobs]
    assert folders[0] != folders[1]
    jobs_dir = (backend.data_dir / "jobs").resolve()
    assert [f.parent for f in folders] == [jobs_dir / f"tenant-{tenant_id_of(job['id'])}" for job in jobs]
    assert [job["id"] for job in a.get("/jobs").json()["items"]] == [jobs[0]["id"]]
    assert [job["id"] for job in b.get("/jobs").json()["items"]] == [jobs[1]["id"]]
    # ... and inside one tenant the name is still one job's
    assert b.post("/jobs", json=make_spec(datasets[1]["id"], output_dir="shared")).status_code == 422


# Code and secrets ------------------------------------------------------------------------------


def test_trust_remote_code_is_refused_unless_the_server_allows_it(client, dataset, monkeypatch):
    from traindock.settings import get_settings

    spec = make_spec(dataset["id"], trust_remote_code=True)
    response = client.post("/jobs", json=spec)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "trust_remote_code"] and "trust_remote_code" in error["msg"]
    report = client.post("/jobs/validate", json=spec).json()
    assert [e["loc"] for e in report["errors"]] == [["body", "trust_remote_code"]]
    assert client.get("/jobs").json()["items"] == []

    monkeypatch.setenv("TRAINDOCK_ALLOW_TRUST_REMOTE_CODE", "true")
    get_settings.cache_clear()
    response = client.post("/jobs", json=spec)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["trust_remote_code"] is True


SECRET = "hf_SECRET123"


def test_hub_tokens_are_never_accepted_in_a_spec(client, dataset):
    for where in (["training"], [], ["lora"], ["data"], ["resources"]):
        for field in ("hub_token", "token", "hf_token"):
            spec = make_spec(dataset["id"])
            target = spec
            for part in where:
                target = target.setdefault(part, {})
            target[field] = SECRET
            for path in ("/jobs", "/jobs/validate"):
                response = client.post(path, json=spec)
                assert SECRET not in response.text, (where, field, path)
                errors = response.json()["detail"] if path == "/jobs" else response.json()["errors"]
                assert response.status_code == (422 if path == "/jobs" else 200), (where, field)
                assert any(e["loc"] == ["body", *where, field] for e in errors), (where, field, errors)
            response = client.post("/jobs", json=spec, headers={"Idempotency-Key": f"{where}{field}"})
            assert response.status_code == 422 and SECRET not in response.text
    assert client.get("/jobs").json()["items"] == []
    assert SECRET not in dump_database()


def test_push_to_hub_needs_the_servers_token(client, dataset, monkeypatch):
    from traindock.settings import get_settings

    monkeypatch.setenv("TRAINDOCK_HUB_NAMESPACES", '{"acme": "acme"}')
    get_settings.cache_clear()
    spec = make_spec(dataset["id"], training={"push_to_hub": True, "hub_model_id": "acme/model"})
    response = client.post("/jobs", json=spec)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "training", "push_to_hub"] and "push_to_hub" in error["msg"]
    assert client.get("/jobs").json()["items"] == []


def test_the_servers_hub_token_never_appears_in_an_answer(client, backend, dataset, monkeypatch):
    from traindock.settings import get_settings

    token = "hf_SERVERSIDE_TOKEN_0123456789"
    monkeypatch.setenv("TRAINDOCK_HUB_TOKEN", token)
    monkeypatch.setenv("TRAINDOCK_HUB_NAMESPACES", '{"acme": "acme"}')
    get_settings.cache_clear()
    spec = make_spec(dataset["id"], training={"push_to_hub": True, "hub_model_id": "acme/model"})
    answers = [client.post("/jobs/validate", json=spec)]
    created = client.post("/jobs", json=spec)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    answers.append(created)
    answers += [client.get(path) for path in (
        f"/jobs/{job_id}", "/jobs", f"/jobs/{job_id}/events", f"/jobs/{job_id}/metrics",
        f"/jobs/{job_id}/checkpoints", "/health", "/openapi.json", "/schema/job-spec", "/datasets",
    )]
    answers.append(client.post(f"/jobs/{job_id}/cancel"))
    answers.append(client.get(f"/jobs/{job_id}/events"))
    answers.append(client.post(f"/jobs/{job_id}/resume"))
    assert all(answer.status_code < 500 for answer in answers)
    for answer in answers:
        assert token not in answer.text, answer.request.url
        assert token not in str(answer.headers), answer.request.url
    assert token not in dump_database()


@pytest.mark.parametrize(("namespaces", "repo", "allowed"), [
    ('{"acme": "acme-org"}', "acme-org/model", True),
    ('{"acme": "acme-org"}', "other-org/model", False),
    ('{"acme": "acme-org"}', "acme-org-evil/model", False),
    ('{"*": "tenants-{tenant}"}', "tenants-acme/model", True),
    ('{"*": "tenants-{tenant}"}', "tenants-globex/model", False),
    ("{}", "acme/model", False),
])
def test_hub_model_id_must_be_under_the_tenants_namespace(client, dataset, monkeypatch, namespaces, repo, allowed):
    from traindock.settings import get_settings

    monkeypatch.setenv("TRAINDOCK_HUB_TOKEN", "hf_x")
    monkeypatch.setenv("TRAINDOCK_HUB_NAMESPACES", namespaces)
    get_settings.cache_clear()
    response = client.post("/jobs", json=make_spec(dataset["id"], training={"push_to_hub": True, "hub_model_id": repo}))
    if allowed:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 422
        assert [e["loc"] for e in response.json()["detail"]] == [["body", "training", "hub_model_id"]]
