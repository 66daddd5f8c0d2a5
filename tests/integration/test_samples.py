"""GET /jobs/{id}/samples: the sample generations the training process stores per evaluation step,
tenant-scoped; their samples.generated events in the native and the /v1 event lists."""

from fastapi.testclient import TestClient

from tests.integration.conftest import authorized, issue, make_spec


def record(job_id: int, step: int, outputs: list[str], metrics: dict[str, float]) -> None:
    """As the training process writes a round (worker/reporting.py Reporter.samples)."""
    from db.engine import session_scope
    from db.runs import latest_run
    from db.samples import record_samples

    samples = [{"prompt_index": 0, "source": "prompt", "prompt": [{"role": "user", "content": "Hi"}],
                "output": outputs[0], "reference": None}]
    samples += [{"prompt_index": index, "source": "validation", "prompt": f"Question {index}", "output": output,
                 "reference": f"Answer {index}"} for index, output in enumerate(outputs[1:], start=1)]
    with session_scope() as session:
        record_samples(session, job_id, latest_run(session, job_id).id, step, samples,
                       {"seconds": 0.5, "final": False, "generated": len(samples), "skipped": 0, "metrics": metrics})


def test_samples_per_step_filtered_and_replaced(client, dataset):
    job = client.post("/jobs", json=make_spec(dataset["id"], data={"val_set_size": 4}, evaluation={
        "sample_prompts": [[{"role": "user", "content": "Hi"}]], "samples_from_validation": 2,
        "generation_metrics": ["rouge_l"]})).json()
    assert job["spec"]["evaluation"]["generation_metrics"] == ["rouge_l"]
    assert client.get(f"/jobs/{job['id']}/samples").json() == []
    record(job["id"], 10, ["a", "b", "c"], {"rouge_l": 0.25})
    record(job["id"], 20, ["d", "e", "f"], {"rouge_l": 0.5})
    record(job["id"], 20, ["D", "E", "F"], {"rouge_l": 0.75})  # a resumed attempt's round replaces it

    samples = client.get(f"/jobs/{job['id']}/samples").json()
    assert [(s["step"], s["prompt_index"], s["output"]) for s in samples] == [
        (10, 0, "a"), (10, 1, "b"), (10, 2, "c"), (20, 0, "D"), (20, 1, "E"), (20, 2, "F")]
    first = samples[0]
    assert set(first) == {"step", "prompt_index", "source", "prompt", "output", "reference", "time"}
    assert first["prompt"] == [{"role": "user", "content": "Hi"}] and first["reference"] is None
    assert samples[1]["source"] == "validation" and samples[1]["reference"] == "Answer 1"
    assert [s["output"] for s in client.get(f"/jobs/{job['id']}/samples", params={"step": 20}).json()] == ["D", "E", "F"]
    across = client.get(f"/jobs/{job['id']}/samples", params={"prompt_index": 1}).json()
    assert [(s["step"], s["output"]) for s in across] == [(10, "b"), (20, "E")]
    assert client.get(f"/jobs/{job['id']}/samples", params={"step": -1}).status_code == 422

    events = [e for e in client.get(f"/jobs/{job['id']}/events").json()["items"] if e["type"] == "samples.generated"]
    assert [e["data"]["step"] for e in events] == [10, 20, 20]
    assert events[-1]["data"]["metrics"] == {"rouge_l": 0.75} and "rouge_l 0.75" in events[-1]["message"]

    from api.openai_compat import ids

    v1 = client.get(f"/v1/fine_tuning/jobs/{ids.encode(ids.JOB, job['id'])}/events", params={"limit": 100})
    assert v1.status_code == 200, v1.text
    shown = [e for e in v1.json()["data"] if e["data"].get("traindock_type") == "samples.generated"]
    assert len(shown) == 3 and shown[0]["type"] == "message" and shown[0]["data"]["metrics"]


def test_another_tenants_samples_are_404(client, dataset):
    job = client.post("/jobs", json=make_spec(dataset["id"])).json()
    record(job["id"], 1, ["a"], {})
    with TestClient(client.app, headers=authorized(issue("other"))) as other:
        for path in (f"/jobs/{job['id']}/samples", "/jobs/999999/samples"):
            response = other.get(path)
            assert response.status_code == 404 and "not found" in response.json()["detail"]
    assert len(client.get(f"/jobs/{job['id']}/samples").json()) == 1
