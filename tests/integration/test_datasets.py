"""Dataset upload, detection, line errors, listing and deletion, on both backends."""

import hashlib
import json

import pytest

from tests.integration.conftest import ALPACA_ROWS, jsonl, make_spec


def upload(client, content: bytes, name: str = "data.jsonl"):
    return client.post("/datasets", files={"file": (name, content)})


@pytest.mark.parametrize("rows, expected", [
    (ALPACA_ROWS, "alpaca"),
    ([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 3, "chat"),
    ([{"text": "once upon a time"}] * 5, "text"),
])
def test_upload_detects_format_and_describes_the_file(client, backend, rows, expected):
    content = jsonl(rows)
    response = upload(client, content)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["format"] == expected
    assert body["rows"] == len(rows)
    assert body["bytes"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert response.headers["location"] == f"/datasets/{body['id']}"
    stored = backend.data_dir / "datasets" / f"{body['id']}.jsonl"
    assert stored.read_bytes() == content
    assert client.get(f"/datasets/{body['id']}").json() == body


@pytest.mark.parametrize("content, line, reason", [
    (b'{"text": "ok"}\n{"text": "ok"\n', 2, "invalid JSON"),
    (b'{"text": "ok"}\n[1, 2]\n', 2, "JSON object"),
    (b'{"text": "ok"}\n{"instruction": "x", "output": "y"}\n', 2, "a alpaca row in a file whose rows are text"),
    (b'{"instruction": "x", "output": "y"}\n{"instruction": "", "output": "y"}\n', 2, "'instruction' must not be empty"),
    (b'{"messages": [{"role": "user", "content": "x"}]}\n', 1, "at least one assistant message"),
    (b'{"messages": [{"role": "robot", "content": "x"}]}\n', 1, "messages[0].role"),
    (b'{"prompt": "x"}\n', 1, "expected an alpaca row"),
    (b'{"text": "ok"}\n\xff\xfe\n', 2, "UTF-8"),
])
def test_bad_line_is_422_with_line_number_and_stores_nothing(client, backend, content, line, reason):
    response = upload(client, content)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["line"] == line
    assert error["msg"].startswith(f"line {line}: ")
    assert reason in error["msg"]
    assert error["loc"][:2] == ["body", "file"]
    assert client.get("/datasets").json()["items"] == []
    assert list((backend.data_dir / "datasets").iterdir()) == []


def test_empty_file_is_refused(client):
    response = upload(client, b"\n\n")
    assert response.status_code == 422
    assert "no rows" in response.json()["detail"][0]["msg"]


def test_upload_over_the_size_limit_is_413_and_stores_nothing(client, backend, monkeypatch):
    monkeypatch.setenv("TRAINDOCK_MAX_UPLOAD_BYTES", "100")
    from traindock.settings import get_settings

    get_settings.cache_clear()
    response = upload(client, jsonl([{"text": "x" * 50}] * 4))
    assert response.status_code == 413
    assert list((backend.data_dir / "datasets").iterdir()) == []


def test_list_is_newest_first_with_cursor_pagination(client):
    ids = [upload(client, jsonl([{"text": f"row {i}"}])).json()["id"] for i in range(5)]
    first = client.get("/datasets", params={"limit": 2}).json()
    assert [d["id"] for d in first["items"]] == ids[::-1][:2]
    second = client.get("/datasets", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in second["items"]] == ids[::-1][2:4]
    third = client.get("/datasets", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [d["id"] for d in third["items"]] == ids[:1]
    assert third["next_cursor"] is None


def test_unknown_dataset_is_404(client):
    assert client.get("/datasets/999").status_code == 404
    assert client.delete("/datasets/999").status_code == 404


def test_delete_is_409_while_a_queued_job_uses_it_and_works_after(client, backend, dataset):
    job = client.post("/jobs", json=make_spec(dataset["id"])).json()
    response = client.delete(f"/datasets/{dataset['id']}")
    assert response.status_code == 409
    assert (backend.data_dir / "datasets" / f"{dataset['id']}.jsonl").exists()
    assert client.post(f"/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    assert client.delete(f"/datasets/{dataset['id']}").status_code == 204
    assert client.get(f"/datasets/{dataset['id']}").status_code == 404
    assert not (backend.data_dir / "datasets" / f"{dataset['id']}.jsonl").exists()
    # the finished job is kept, with its spec intact
    kept = client.get(f"/jobs/{job['id']}").json()
    assert kept["spec"]["dataset_id"] == dataset["id"]
    assert kept["dataset_id"] is None
