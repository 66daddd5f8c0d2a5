"""Dataset upload, detection, line errors, listing, preview and deletion, on both backends."""

import hashlib
import json

import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import ALPACA_ROWS, authorized, issue, jsonl, make_spec


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


TOOL_ROW = {"messages": [
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "assistant", "content": "Sunny.", "weight": 1},
]}
SHAREGPT_ROW = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}


@pytest.mark.parametrize("rows, expected", [
    ([TOOL_ROW] * 2, "chat"),
    ([SHAREGPT_ROW] * 3, "sharegpt"),
])
def test_openai_chat_with_tools_and_sharegpt_rows_are_detected(client, rows, expected):
    body = upload(client, jsonl(rows)).json()
    assert (body["format"], body["rows"]) == (expected, len(rows))


def test_a_json_array_file_is_stored_as_the_jsonl_of_its_rows(client, backend):
    rows = [SHAREGPT_ROW, {"conversations": [{"from": "human", "value": "é ✓"}, {"from": "gpt", "value": "ok"}]}]
    content = b"  [\n" + b",\n".join(json.dumps(row, indent=2).encode() for row in rows) + b"\n]\n"
    response = upload(client, content, name="data.json")
    assert response.status_code == 201, response.text
    body = response.json()
    stored = (backend.data_dir / "datasets" / f"{body['id']}.jsonl").read_bytes()
    assert [json.loads(line) for line in stored.splitlines()] == rows
    assert (body["format"], body["rows"], body["bytes"]) == ("sharegpt", 2, len(stored))
    assert body["sha256"] == hashlib.sha256(stored).hexdigest()


@pytest.mark.parametrize("content, where, reason", [
    (b'[{"text": "a"}, {"text": 1}]', "element 2", "'text' must be a string"),
    (b'[{"text": "a"}, {"text": "b"]', "element 2", "invalid JSON"),
    (b'[{"text": "a"} {"text": "b"}]', "element 1", "expected ',' or ']'"),
    (b'[{"text": "a"}, 3]', "element 2", "JSON object"),
    (b'[{"text": "a"}', None, "not closed"),
    (b'[{"text": "a"}] x', None, "after the end"),
    (b'[]', None, "no rows"),
])
def test_bad_json_arrays_are_422_naming_the_element(client, backend, content, where, reason):
    response = upload(client, content, name="data.json")
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert reason in error["msg"]
    if where:
        assert error["msg"].startswith(f"{where}: ") and error["loc"] == ["body", "file", where]
    assert list((backend.data_dir / "datasets").iterdir()) == []


def test_a_json_array_element_over_the_line_limit_is_422(client, monkeypatch):
    monkeypatch.setenv("TRAINDOCK_MAX_LINE_BYTES", "2000000")
    from traindock.settings import get_settings

    get_settings.cache_clear()
    big = json.dumps([{"text": "a"}, {"text": "x" * 2_500_000}]).encode()
    response = upload(client, big, name="data.json")
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "element 2: longer than the limit of 2000000 bytes"


OPENAI_DPO_ROW = {"input": {"messages": [{"role": "user", "content": "2+2?"}]},
                  "preferred_output": [{"role": "assistant", "content": "4"}],
                  "non_preferred_output": [{"role": "assistant", "content": "5"}]}


@pytest.mark.parametrize("row, expected", [
    ({"prompt": "2+2?", "chosen": "4", "rejected": "5"}, "preference"),
    ({"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}],
      "rejected": [{"role": "assistant", "content": "5"}]}, "preference"),
    (OPENAI_DPO_ROW, "openai_dpo"),
])
def test_preference_rows_are_detected(client, row, expected):
    body = upload(client, jsonl([row, row])).json()
    assert (body["format"], body["rows"]) == (expected, 2)


@pytest.mark.parametrize("bad, reason", [
    ({"prompt": "2+2?", "chosen": "4"}, "'rejected' is missing"),
    ({"prompt": "2+2?", "chosen": "", "rejected": "5"}, "'chosen' must not be empty"),
    ({"prompt": [{"role": "user", "content": "q"}], "chosen": "4", "rejected": [{"role": "assistant", "content": "5"}]},
     "'chosen' must be a list of one assistant message"),
    ({**OPENAI_DPO_ROW, "input": {"messages": [{"role": "assistant", "content": "x"}]}},
     "'input.messages' needs at least one user message"),
    ({**OPENAI_DPO_ROW, "non_preferred_output": [{"role": "user", "content": "5"}]},
     "'non_preferred_output' must be a list of one assistant message"),
    ({**OPENAI_DPO_ROW, "preferred_output": [{"role": "assistant", "content": 4}]},
     "preferred_output[0].content must be a non-empty string"),
])
def test_bad_preference_rows_are_422_with_their_line(client, backend, bad, reason):
    good = {"prompt": "2+2?", "chosen": "4", "rejected": "5"} if "prompt" in bad else OPENAI_DPO_ROW
    response = upload(client, jsonl([good, bad]))
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["msg"].startswith("line 2: ") and reason in error["msg"], error["msg"]
    assert list((backend.data_dir / "datasets").iterdir()) == []


def test_preference_and_supervised_rows_do_not_mix(client):
    response = upload(client, jsonl([{"text": "x"}, {"prompt": "2+2?", "chosen": "4", "rejected": "5"}]))
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "line 2: a preference row in a file whose rows are text"


@pytest.mark.parametrize("message, reason", [
    ({"role": "assistant", "content": "x", "weight": 2}, "weight must be 0 or 1"),
    ({"role": "user", "content": "x", "weight": 1}, "weight must be 0 or 1"),
    ({"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}, "tool_calls[0]"),
    ({"role": "assistant", "content": None}, "content must be a string"),
])
def test_bad_chat_messages_are_422(client, message, reason):
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, message]}
    response = upload(client, jsonl([row]))
    assert response.status_code == 422
    assert reason in response.json()["detail"][0]["msg"]


def test_rows_previews_the_first_rows_as_stored(client, backend):
    rows = [{"text": f"row {i}"} for i in range(7)]
    dataset = upload(client, b"\n" + jsonl(rows[:3]) + b"\n" + jsonl(rows[3:])).json()
    preview = client.get(f"/datasets/{dataset['id']}/rows", params={"limit": 5})
    assert preview.status_code == 200, preview.text
    assert preview.json() == {"rows": rows[:5], "total": 7}
    assert client.get(f"/datasets/{dataset['id']}/rows").json()["rows"] == rows  # default 10
    for limit in (0, 101):
        refused = client.get(f"/datasets/{dataset['id']}/rows", params={"limit": limit})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "limit"]
    assert client.get(f"/datasets/{dataset['id'] + 1}/rows").status_code == 404
    other = TestClient(client.app, headers=authorized(issue("other")))
    assert other.get(f"/datasets/{dataset['id']}/rows").status_code == 404
