"""Preference jobs through the native API: a dataset's detected format must suit the job's objective."""

from tests.integration.conftest import jsonl, make_spec

PAIRS = [{"prompt": f"q {i}", "chosen": "yes", "rejected": "no"} for i in range(4)]


def upload(client, rows) -> dict:
    response = client.post("/datasets", files={"file": ("data.jsonl", jsonl(rows))})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_dpo_job_on_preference_rows_is_stored_with_its_objective(client):
    pairs = upload(client, PAIRS)
    response = client.post("/jobs", json={**make_spec(pairs["id"]), "objective": "dpo",
                                          "preference": {"beta": 0.2, "loss_type": "ipo"}})
    assert response.status_code == 201, response.text
    spec = response.json()["spec"]
    assert (spec["objective"], spec["preference"]["beta"], spec["preference"]["loss_type"]) == ("dpo", 0.2, "ipo")
    validated = client.post("/jobs/validate", json={**make_spec(pairs["id"]), "objective": "dpo"})
    assert validated.status_code == 200 and validated.json()["valid"] is True, validated.text


def test_datasets_must_suit_the_objective(client, dataset):
    pairs = upload(client, PAIRS)
    cases = [
        ({**make_spec(pairs["id"])}, ["body", "dataset_id"], "holds preference rows (detected format 'preference')"),
        ({**make_spec(dataset["id"]), "objective": "orpo"}, ["body", "dataset_id"],
         f"dataset {dataset['id']} holds alpaca rows (detected format)"),
        ({**make_spec(pairs["id"]), "objective": "dpo", "validation_dataset_id": dataset["id"]},
         ["body", "validation_dataset_id"], "holds alpaca rows"),
        ({**make_spec(pairs["id"]), "objective": "dpo", "data": {"packing": True}}, ["body", "data", "packing"],
         "objective 'dpo': packing"),
    ]
    for spec, loc, fragment in cases:
        response = client.post("/jobs", json=spec)
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == loc and fragment in error["msg"], error
