"""The server's limits, on both backends, with small values: upload size (with and without a
Content-Length, counted as the body arrives), line length, rows, JSON body size, and queued jobs
per tenant. A refused request stores nothing."""

import asyncio
import itertools
import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.integration.conftest import authorized, issue, jsonl, make_spec
from tests.integration.test_jobs import queued_messages

BOUNDARY = "limits-boundary"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
MULTIPART_OVERHEAD = 64 * 1024  # what api.body_limit allows an upload beyond the file itself


@pytest.fixture
def limited(backend, monkeypatch):
    """make(NAME=value, ...): a client of an app built with those TRAINDOCK_ settings (the body
    limit reads them when the app is built)."""
    from traindock.settings import get_settings

    clients = []

    def make(tenant: str = "acme", **settings) -> TestClient:
        for name, value in settings.items():
            monkeypatch.setenv(f"TRAINDOCK_{name.upper()}", str(value))
        get_settings.cache_clear()
        client = TestClient(create_app(), headers=authorized(issue(tenant)))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def stored(backend) -> list[str]:
    return sorted(path.name for path in (backend.data_dir / "datasets").iterdir())


def multipart(content: bytes, filename: str = "data.jsonl") -> list[bytes]:
    return [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode(),
        content,
        f"\r\n--{BOUNDARY}--\r\n".encode(),
    ]


def chunked(parts: list[bytes], size: int = 8192):
    """A generator body: httpx sends it without a Content-Length (Transfer-Encoding: chunked)."""
    for part in parts:
        for start in range(0, len(part), size):
            yield part[start:start + size]


def rows_of(n: int, width: int = 20) -> bytes:
    return jsonl([{"text": f"{i:0{width}d}"} for i in range(n)])


# Upload size -----------------------------------------------------------------------------------


def test_upload_over_the_limit_with_content_length_is_413_and_stores_nothing(limited, backend):
    client = limited(max_upload_bytes=1000)
    for content in (rows_of(40), rows_of(40 + MULTIPART_OVERHEAD // 30)):  # past the file limit; past the body limit
        assert len(content) > 1000
        response = client.post("/datasets", files={"file": ("d.jsonl", content)})
        assert response.request.headers["content-length"].isdigit()
        assert response.status_code == 413, response.text
        assert "limit" in response.json()["detail"]
    assert stored(backend) == []
    assert client.get("/datasets").json()["items"] == []
    fits = rows_of(20)
    assert len(fits) <= 1000
    assert client.post("/datasets", files={"file": ("d.jsonl", fits)}).status_code == 201


def test_upload_over_the_limit_without_content_length_is_413_and_stores_nothing(limited, backend):
    client = limited(max_upload_bytes=1000)
    for content in (rows_of(40), rows_of(40 + MULTIPART_OVERHEAD // 30)):
        response = client.post("/datasets", content=chunked(multipart(content)), headers=MULTIPART)
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert response.status_code == 413, (len(content), response.status_code, response.text)
    assert stored(backend) == []
    assert client.get("/datasets").json()["items"] == []
    response = client.post("/datasets", content=chunked(multipart(rows_of(20))), headers=MULTIPART)
    assert response.status_code == 201, response.text


async def pulled_before_answer(app, path: str, headers: dict[str, str], chunks) -> tuple[int, int]:
    """Drive the app over raw ASGI with an endless-looking body and no Content-Length: (status,
    bytes the app had taken in when it answered)."""
    pulled = 0
    source = iter(chunks)
    answered = []

    async def receive():
        nonlocal pulled
        chunk = next(source, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "server": ("testserver", 80), "client": ("testclient", 50000),
    }
    await app(scope, receive, send)
    return answered[0], pulled


def test_a_body_without_content_length_is_cut_off_as_it_arrives(limited, backend):
    """Ten megabytes offered, the server stops taking them in at its limit."""
    client = limited(max_upload_bytes=1000, max_request_bytes=1000)
    key = client.headers["authorization"]
    chunk = 4096
    head, _, tail = multipart(b"")
    piece = rows_of(120)
    assert len(piece) <= chunk
    upload = itertools.chain([head], itertools.repeat(piece, 10_000_000 // len(piece)), [tail])
    status, pulled = asyncio.run(pulled_before_answer(
        client.app, "/datasets", {**MULTIPART, "authorization": key}, upload))
    assert status == 413
    assert pulled <= len(head) + 1000 + MULTIPART_OVERHEAD + chunk
    body = itertools.chain([b'{"name": "'], itertools.repeat(b"x" * chunk, 10_000_000 // chunk), [b'"}'])
    status, pulled = asyncio.run(pulled_before_answer(
        client.app, "/jobs", {"content-type": "application/json", "authorization": key}, body))
    assert status == 413
    assert pulled <= 1000 + chunk
    assert stored(backend) == []


# Lines and rows --------------------------------------------------------------------------------


def test_a_line_over_the_limit_is_422_with_its_number_and_stores_nothing(limited, backend):
    client = limited(max_line_bytes=100)
    short = b'{"text": "short"}\n'
    long_line = b'{"text": "' + b"y" * 200 + b'"}'
    for content, line in [
        (short * 2 + long_line + b"\n" + short, 3),
        (long_line + b"\n", 1),
        (short * 4 + long_line, 5),                        # last line, no newline
        (short + b'{"text": "' + b"z" * 3_000_000 + b'"}\n', 2),  # longer than a read chunk
        (short + b" " * 150 + b"\n", 2),                   # blank, but too long
    ]:
        for send in ("declared", "chunked"):
            if send == "declared":
                response = client.post("/datasets", files={"file": ("d.jsonl", content)})
            else:
                response = client.post("/datasets", content=chunked(multipart(content)), headers=MULTIPART)
            assert response.status_code == 422, (line, send, response.status_code, response.text[:300])
            [error] = response.json()["detail"]
            assert error["line"] == line, (line, send, error)
            assert error["msg"].startswith(f"line {line}: ") and "100" in error["msg"], error
            assert error["loc"][:2] == ["body", "file"]
    assert stored(backend) == []
    assert client.get("/datasets").json()["items"] == []
    exactly = b'{"text": "' + b"w" * 88 + b'"}\n'
    assert len(exactly) == 101  # 100 bytes and its newline
    assert client.post("/datasets", files={"file": ("d.jsonl", exactly)}).status_code == 201


def test_too_many_rows_is_413_and_stores_nothing(limited, backend):
    client = limited(max_dataset_rows=5)
    for content in (rows_of(6), rows_of(1000), rows_of(6) + b"\n\n"):
        response = client.post("/datasets", files={"file": ("d.jsonl", content)})
        assert response.status_code == 413, response.text
        assert "5 rows" in response.json()["detail"]
        response = client.post("/datasets", content=chunked(multipart(content)), headers=MULTIPART)
        assert response.status_code == 413, response.text
    assert stored(backend) == []
    assert client.get("/datasets").json()["items"] == []
    # blank lines are not rows: five rows and blank lines fit
    response = client.post("/datasets", files={"file": ("d.jsonl", b"\n" + rows_of(5) + b"\n\n")})
    assert response.status_code == 201 and response.json()["rows"] == 5


# JSON bodies -----------------------------------------------------------------------------------


def big_spec(dataset_id: int, size: int) -> bytes:
    body = json.dumps(make_spec(dataset_id, name="n" * 200, training={"report_to": ["x" * 100] * (size // 100)}))
    return body.encode()


def test_json_body_over_the_limit_is_413_declared_or_chunked(limited, backend):
    client = limited(max_request_bytes=2000)
    dataset = client.post("/datasets", files={"file": ("d.jsonl", rows_of(20))}).json()
    assert dataset["rows"] == 20  # uploads have their own limit, not this one
    body = big_spec(dataset["id"], 5000)
    assert len(body) > 2000
    for path in ("/jobs", "/jobs/validate", "/jobs/1/resume"):
        declared = client.post(path, content=body, headers={"content-type": "application/json"})
        assert declared.request.headers["content-length"] == str(len(body))
        assert declared.status_code == 413, (path, declared.text)
        assert "2000" in declared.json()["detail"]
        streamed = client.post(path, content=chunked([body], 500), headers={"content-type": "application/json"})
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413, (path, streamed.status_code, streamed.text)
        assert "2000" in streamed.json()["detail"]
    lying = client.post("/jobs", content=body, headers={"content-type": "application/json", "content-length": "10"})
    assert lying.status_code in (400, 413, 422), lying.text  # never stored, never a 500
    assert client.get("/jobs").json()["items"] == []
    assert queued_messages(backend) == []
    fits = json.dumps(make_spec(dataset["id"])).encode()
    assert len(fits) < 2000
    assert client.post("/jobs", content=fits, headers={"content-type": "application/json"}).status_code == 201
    assert client.post("/jobs", content=chunked([fits], 50),
                       headers={"content-type": "application/json"}).status_code == 201


def test_a_bad_content_length_is_refused(limited):
    client = limited(max_request_bytes=2000)
    for value in ("-1", "abc", "1e9", "99999999999999999999999"):
        response = client.post("/jobs", content=b"{}", headers={"content-type": "application/json",
                                                                "content-length": value})
        assert response.status_code in (400, 413), (value, response.status_code)


# Queued jobs per tenant ------------------------------------------------------------------------


def test_queued_jobs_per_tenant_is_429_with_retry_after(limited, backend):
    client = limited(max_queued_jobs_per_tenant=2)
    other = limited(tenant="globex")
    dataset = client.post("/datasets", files={"file": ("d.jsonl", rows_of(20))}).json()
    first = client.post("/jobs", json=make_spec(dataset["id"]), headers={"Idempotency-Key": "k1"})
    second = client.post("/jobs", json=make_spec(dataset["id"]))
    assert first.status_code == second.status_code == 201
    for attempt in range(3):
        refused = client.post("/jobs", json=make_spec(dataset["id"], name=f"third-{attempt}"))
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) > 0
        assert "2 queued jobs" in refused.json()["detail"]
    assert len(client.get("/jobs").json()["items"]) == 2
    assert len(queued_messages(backend)) == 2
    # a retry of an accepted request is a replay, not a new job
    again = client.post("/jobs", json=make_spec(dataset["id"]), headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # validation still answers at the limit
    assert client.post("/jobs/validate", json=make_spec(dataset["id"])).json()["valid"] is True

    # another tenant has its own allowance
    theirs = other.post("/datasets", files={"file": ("d.jsonl", rows_of(20))}).json()
    for _ in range(2):
        assert other.post("/jobs", json=make_spec(theirs["id"])).status_code == 201
    assert other.post("/jobs", json=make_spec(theirs["id"])).status_code == 429

    # a cancelled job no longer counts
    client.post(f"/jobs/{second.json()['id']}/cancel")
    assert client.post("/jobs", json=make_spec(dataset["id"])).status_code == 201
    assert client.post("/jobs", json=make_spec(dataset["id"])).status_code == 429
    assert len(client.get("/jobs", params={"status": "queued"}).json()["items"]) == 2
    # neither does a paused one
    assert client.post(f"/jobs/{first.json()['id']}/pause").json()["status"] == "paused"
    assert client.post("/jobs", json=make_spec(dataset["id"])).status_code == 201
    assert client.post("/jobs", json=make_spec(dataset["id"])).status_code == 429
