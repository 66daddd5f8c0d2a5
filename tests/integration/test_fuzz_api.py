"""Property-based run of the whole OpenAPI document against the running service.

A real uvicorn process (`traindock api`) serves a fresh data root; schemathesis loads
/openapi.json from it and sends generated requests (valid and invalid) to every operation with an
API key. Each response must not be a 5xx, must have a documented status code and content type, and
must match the documented schema. Path ids are pointed at existing datasets and jobs for part of the
cases, so the 200 bodies are checked too. The run is bounded and derandomized (same requests every
time); it counts the requests sent and failed, prints them, and fails on any failure (or on any
traceback in the server's log).

Each operation gets its own Hypothesis test built from schemathesis' `operation.as_strategy()`
rather than `schema.parametrize()`: that needs the schema at collection time, before the server
runs, and the lazy `schemathesis.pytest.from_fixture` of schemathesis 4.32 fails on pytest 9.2
(`'Function' object has no attribute '_nodeid'`). Checks and counts are the same.

Run it larger with TRAINDOCK_FUZZ_EXAMPLES=1000 (examples per operation).
"""

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import REDIS_URL, REPO, reset_caches, truncate_postgres
from tests.integration.conftest import ALPACA_ROWS, jsonl

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Examples per operation (valid and invalid); 150 keeps each backend's run near 20 s on 2 cores.
MAX_EXAMPLES = int(os.environ.get("TRAINDOCK_FUZZ_EXAMPLES", "150"))
# Share of the cases whose path id is replaced by an existing dataset or job.
EXISTING_ID_EVERY = 2
# Share of the cases sent with an invalid API key.
BAD_KEY_EVERY = 16


@dataclass
class LiveAPI:
    backend: str
    url: str
    key: str
    dataset_ids: list[int]
    job_ids: list[int]
    log: Path
    sent: int = 0
    failed: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_operation: Counter = field(default_factory=Counter)
    failures: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


RUNS: list[LiveAPI] = []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the API did not come up:\n{log.read_text()}")


def _tracebacks(log: str) -> list[str]:
    """Each traceback in the server's log, from its first line to the exception line."""
    found, current = [], None
    for line in log.splitlines():
        if line.startswith("Traceback"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line and not line.startswith((" ", "\t")) and not line.startswith("During handling"):
                if len(current) > 2 and not line.startswith(("The above", "Traceback")):
                    found.append("\n".join(current[-12:]))
                    current = None
    return found


def _seed(url: str, key: str) -> tuple[list[int], list[int]]:
    """Datasets and a job through the API, so that ids exist."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        dataset_ids = []
        for index in range(3):
            response = client.post("/datasets", files={"file": (f"d{index}.jsonl", jsonl(ALPACA_ROWS))})
            assert response.status_code == 201, response.text
            dataset_ids.append(response.json()["id"])
        job_ids = []
        for index in range(2):
            spec = {"base_model": "acme/tiny-llama", "dataset_id": dataset_ids[0], "name": f"seed-{index}",
                    "training": {"max_steps": 4, "logging_steps": 1}}
            response = client.post("/jobs", json=spec)
            assert response.status_code == 201, response.text
            job_ids.append(response.json()["id"])
    return dataset_ids, job_ids


def _seed_progress(job_id: int) -> None:
    """Metric points and checkpoints of a job, as a worker records them."""
    from db.checkpoints import record_checkpoint
    from db.engine import session_scope
    from db.metrics import record_metric_points
    from db.runs import latest_run

    with session_scope() as session:
        run = latest_run(session, job_id)
        for step in (1, 2, 3):
            record_metric_points(session, job_id, run.id, [(step, step / 4, {"loss": 2.0 / step, "learning_rate": 1e-4})])
        record_checkpoint(session, job_id, run.id, 2, f"/tmp/job-{job_id}/checkpoint-2", {"loss": 1.0})


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live_api(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"fuzz-{request.param}") / "data"
    env = {key: value for key, value in os.environ.items()
           if key not in ("TRAINDOCK_DATABASE_URL", "TRAINDOCK_BROKER_URL")}
    env["TRAINDOCK_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_migrated")
        truncate_postgres(url)
        env["TRAINDOCK_DATABASE_URL"] = url
        env["TRAINDOCK_BROKER_URL"] = REDIS_URL
    else:
        subprocess.run([sys.executable, "-m", "traindock.cli", "migrate"], cwd=REPO, env=env, check=True,
                       capture_output=True)
    with pytest.MonkeyPatch.context() as patch:
        for key in ("TRAINDOCK_DATABASE_URL", "TRAINDOCK_BROKER_URL"):
            patch.delenv(key, raising=False)
        for key in ("TRAINDOCK_DATA_DIR", "TRAINDOCK_DATABASE_URL", "TRAINDOCK_BROKER_URL"):
            if key in env:
                patch.setenv(key, env[key])
        reset_caches()
        from db.engine import session_scope
        from db.tenants import issue_key

        with session_scope() as session:
            key = issue_key(session, "fuzz").secret

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = data_dir.parent / "api.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "traindock.cli", "api", "--port", str(port)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        try:
            _wait_until_up(url, process, log)
            dataset_ids, job_ids = _seed(url, key)
            _seed_progress(job_ids[0])
            run = LiveAPI(request.param, url, key, dataset_ids, job_ids, log)
            RUNS.append(run)
            yield run
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reset_caches()


def _point_at_existing(case, live: LiveAPI) -> None:
    """For every other case, an id in the path or a job spec's dataset_id names an existing
    dataset or job (random ids almost never do), so that the success paths run too."""
    if live.sent % EXISTING_ID_EVERY:
        return
    turn = live.sent // EXISTING_ID_EVERY
    if isinstance(case.body, dict) and isinstance(case.body.get("dataset_id"), int):
        case.body["dataset_id"] = live.dataset_ids[0]
    if not case.path_parameters:
        return
    if "job_id" in case.path_parameters:
        case.path_parameters["job_id"] = live.job_ids[turn % len(live.job_ids)]
    if "dataset_id" in case.path_parameters:
        # The last dataset is the one DELETE may take; the others stay for the GETs.
        ids = live.dataset_ids[-1:] if case.method.upper() == "DELETE" else live.dataset_ids[:-1]
        case.path_parameters["dataset_id"] = ids[turn % len(ids)]


def _strategy(operation):
    """Valid and invalid requests (negative mode: wrong types, out-of-range values, missing fields)."""
    return st.one_of([operation.as_strategy(generation_mode=mode) for mode in GenerationMode])


def _fuzz(operation, live: LiveAPI, session: requests.Session) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation))
    def run(case):
        _point_at_existing(case, live)
        # Now and then a key that is not one, so that the 401s are checked too.
        headers = live.headers if live.sent % BAD_KEY_EVERY != 1 else {"Authorization": "Bearer td_nokey_x"}
        live.sent += 1
        live.by_operation[operation.label] += 1
        try:
            response = case.call_and_validate(
                base_url=live.url, session=session, headers=headers, checks=CHECKS, timeout=30
            )
        except FailureGroup as group:
            live.failed += 1
            for failure in group.exceptions:
                live.failures.setdefault((operation.label, failure.title), str(group))
            return
        live.by_status[response.status_code] += 1

    run()


def test_every_operation(live_api):
    schema = schemathesis.openapi.from_url(f"{live_api.url}/openapi.json")
    # The key is ours to send (and, every BAD_KEY_EVERY cases, to get wrong): no generated
    # Authorization headers, so the invalid cases go to the parameters and bodies.
    schema.config.generation.update(with_security_parameters=False)
    # Streams stay open until a job ends: tests/integration/test_stream.py covers them.
    operations = [operation for result in schema.get_all_operations()
                  if not (operation := result.ok()).path.endswith("/stream")]
    assert len(operations) >= 15, [operation.label for operation in operations]
    started = time.monotonic()
    with requests.Session() as session:
        for operation in operations:
            _fuzz(operation, live_api, session)
    live_api.seconds = time.monotonic() - started
    print("\n" + _summary(live_api))
    assert live_api.sent >= len(operations) * MAX_EXAMPLES // 2
    distinct = "\n\n".join(f"{label}: {title}\n{detail}" for (label, title), detail in live_api.failures.items())
    tracebacks = _tracebacks(live_api.log.read_text(errors="replace"))
    if live_api.failed or tracebacks:
        logged = "\n\n".join(tracebacks[:5])
        pytest.fail(f"{live_api.failed} of {live_api.sent} requests failed:\n\n{distinct}\n\n"
                    f"The API logged {len(tracebacks)} errors; the first:\n\n{logged}", pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    """The counts, in the terminal summary."""

    class Reporter:
        def pytest_terminal_summary(self, terminalreporter):
            if not RUNS:
                return
            terminalreporter.section("schemathesis run")
            for run in RUNS:
                terminalreporter.write_line(_summary(run))
                for (label, title), _ in run.failures.items():
                    terminalreporter.write_line(f"    {label}: {title}")

    if not request.config.pluginmanager.has_plugin("traindock-fuzz-report"):
        request.config.pluginmanager.register(Reporter(), "traindock-fuzz-report")
    yield


def _summary(run: LiveAPI) -> str:
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(run.by_status.items()))
    return (f"[{run.backend}] {run.sent} requests sent to {len(run.by_operation)} operations in "
            f"{run.seconds:.1f}s, {run.failed} failed; passing responses by status: {statuses}")


# What the run found, pinned down (in-process, on both backends).

BIG = 2**63  # one past BIGINT


@pytest.mark.parametrize("method, path, params", [
    ("GET", f"/jobs/{BIG}", {}), ("GET", f"/jobs/{BIG}/events", {}), ("POST", f"/jobs/{BIG}/cancel", {}),
    ("POST", f"/jobs/{BIG}/resume", {}), ("GET", f"/datasets/{BIG}", {}), ("DELETE", f"/datasets/{-BIG - 1}", {}),
    ("GET", "/jobs", {"cursor": BIG}), ("GET", "/datasets", {"cursor": BIG}),
    ("GET", "/jobs/1/metrics", {"min_step": 2**31}), ("GET", "/jobs/1/events", {"cursor": BIG}),
])
def test_ids_beyond_the_database_columns_are_422_not_500(client, method, path, params):
    response = client.request(method, path, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] in ("less_than_equal", "greater_than_equal")


def test_ids_beyond_bigint_in_a_spec_are_422_not_500(client, dataset):
    for spec in ({"dataset_id": BIG}, {"dataset_id": dataset["id"], "resume_from_checkpoint": {"job_id": BIG}},
                 {"dataset_id": dataset["id"], "resume_from_checkpoint": {"job_id": 1, "step": 2**31}}):
        body = {"base_model": "acme/tiny-llama", **spec}
        assert client.post("/jobs", json=body).status_code == 422
        report = client.post("/jobs/validate", json=body)
        assert report.status_code == 200 and not report.json()["valid"], report.text
    assert client.post("/jobs/1/resume", json={"checkpoint_step": 2**31}).status_code == 422


@pytest.mark.parametrize("field, value", [("max_grad_norm", "Infinity"), ("warmup_steps", "1e999"),
                                          ("logging_steps", "-Infinity"), ("learning_rate", "NaN")])
def test_infinite_numbers_in_a_spec_are_422_not_500(client, dataset, field, value):
    """1e999 is valid JSON and parses as infinity; so do Python's Infinity/NaN extensions. Stored,
    PostgreSQL's json refused them; the estimates overflowed on them."""
    body = json.dumps({"base_model": "acme/tiny-llama", "dataset_id": dataset["id"],
                       "training": {field: "X"}}).replace('"X"', value)
    headers = {"content-type": "application/json"}
    response = client.post("/jobs", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:3] == ["body", "training", field]
    report = client.post("/jobs/validate", content=body, headers=headers)
    assert report.status_code == 200 and not report.json()["valid"], report.text


def test_an_empty_idempotency_key_is_422_not_stored(client, dataset):
    spec = {"base_model": "acme/tiny-llama", "dataset_id": dataset["id"]}
    for _ in range(2):  # the second used to hit the unique index: 500
        response = client.post("/jobs", json=spec, headers={"Idempotency-Key": ""})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def test_nul_in_a_spec_is_422_and_never_stored(client, dataset):
    """PostgreSQL cannot store NUL in text; in the JSON spec it broke every later output_dir check
    of the tenant (500 on each POST /jobs with an output_dir)."""
    spec = {"base_model": "acme/tiny-llama", "dataset_id": dataset["id"]}
    for bad in ({"name": "a\x00"}, {"lora": {"target_modules": ["q_proj\x00"]}}, {"output_dir": "o\x00"}):
        response = client.post("/jobs", json={**spec, **bad})
        assert response.status_code == 422, response.text
    assert client.post("/jobs", json={**spec, "output_dir": "fine"}).status_code == 201


def test_odd_metric_filters_are_422_or_ignored_not_500(client, dataset):
    job = client.post("/jobs", json={"base_model": "acme/tiny-llama", "dataset_id": dataset["id"]}).json()
    metrics = f"/jobs/{job['id']}/metrics"
    assert client.get(metrics, params={"name": "lo\x00ss"}).status_code == 422
    assert client.get(metrics, params={"cursor": "1:\x00"}).status_code == 422
    for cursor in ("²:loss", f"{2**70}:loss", "x"):  # not a cursor this API gives: from the start
        assert client.get(metrics, params={"cursor": cursor}).status_code == 200


def test_undecodable_json_bodies_are_422_json_invalid(client):
    for body in (b"\xff\xfe{", b"[" * 100_000 + b"]" * 100_000, b'{"dataset_id": ' + b"1" * 5000 + b"}"):
        response = client.post("/jobs/validate", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["type"] == "json_invalid"


def test_a_streamed_body_over_the_limit_is_413_not_400(client):
    """Without Content-Length the limit is counted as the body arrives; FastAPI caught the
    middleware's exception while reading the body and answered 400."""
    def chunks():
        for _ in range(40):
            yield b" " * 64 * 1024

    response = client.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert "limit" in response.json()["detail"]


def test_every_operation_documents_its_errors(client):
    document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert "413" in codes, (method, path)
            if path != "/health":
                assert {"401"} <= codes and operation["security"] == [{"ApiKey": []}], (method, path)
            if "{" in path:
                assert {"404", "422"} <= codes, (method, path)
    assert "429" in document["paths"]["/jobs"]["post"]["responses"]
