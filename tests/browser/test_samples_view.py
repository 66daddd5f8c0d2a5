"""The job page's Samples view in headless Chromium: pick a prompt, see its outputs across steps
beside the reference; a new round (its samples.generated event on the stream) shows up live."""

from tests.browser.conftest import screenshot, sign_in
from tests.e2e.test_training import DEMO_ROWS
from tests.integration.conftest import jsonl
from tests.integration.test_samples import record


def test_samples_view_shows_one_prompts_outputs_across_steps(dashboard, page):
    with dashboard.client() as api:
        dataset = api.post("/datasets", files={"file": ("demo.jsonl", jsonl(DEMO_ROWS))}).json()
        job = api.post("/jobs", json={
            "base_model": "tiny", "dataset_id": dataset["id"], "data": {"val_set_size": 4},
            "training": {"max_steps": 4}, "evaluation": {"sample_prompts": ["Hi"], "samples_from_validation": 2},
        }).json()
    record(job["id"], 2, ["first hello", "first b", "first c"], {})

    sign_in(page, dashboard)
    page.goto(f"{dashboard.url}/ui/#/jobs/{job['id']}")
    page.wait_for_selector('#sample-outputs tr[data-step="2"]')
    assert page.locator("#sample-prompt option").count() == 3
    page.select_option("#sample-prompt", "1")
    assert page.locator("#sample-reference").inner_text() == "Answer 1"
    assert page.locator("#sample-prompt-text").inner_text() == "Question 1"

    record(job["id"], 4, ["last hello", "last b", "last c"], {"rouge_l": 0.5})  # arrives through the stream
    page.wait_for_selector('#sample-outputs tr[data-step="4"]')
    rows = page.locator("#sample-outputs tr").all_inner_texts()
    assert [row.split() for row in rows] == [["2", "first", "b"], ["4", "last", "b"]]
    assert page.locator("#sample-prompt").input_value() == "1"  # the choice survives the refresh
    screenshot(page, "samples")
