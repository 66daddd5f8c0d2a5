"""The dashboard, used as a person would in headless Chromium: sign in, start a job from the
form, watch its loss curve grow from the live stream, download a checkpoint, cancel a job with
its button; upload a bad dataset and read the line's error. Screenshots: tests/artifacts/."""

import json
import time

import pytest

from tests.browser.conftest import screenshot, sign_in
from tests.e2e.test_training import DEMO_ROWS
from tests.integration.conftest import jsonl


def loss_points(page) -> int:
    """How many loss points the job page has drawn."""
    line = page.locator('#loss-chart polyline[data-series="loss"]')
    return len(line.get_attribute("points").split()) if line.count() else 0


@pytest.mark.e2e
def test_sign_in_train_watch_download_and_cancel(dashboard, worker, page):
    with dashboard.client() as api:
        dataset = api.post("/datasets", files={"file": ("demo.jsonl", jsonl(DEMO_ROWS))}).json()

    page.goto(f"{dashboard.url}/ui/")
    page.expected_errors.append("status of 401")  # the browser reports the refused key's answer
    page.fill("#api-key", "td_000000000000_not-a-real-key")
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("text=That key is not valid")
    screenshot(page, "1-sign-in")
    sign_in(page, dashboard)
    assert dashboard.key not in page.url
    assert page.evaluate("sessionStorage.getItem('traindock.apiKey')") == dashboard.key

    # The form, from the schema, validated as it is filled in.
    page.click("text=New job")
    page.wait_for_selector("#f-base_model")
    assert page.locator("#f-dataset_id").input_value() == str(dataset["id"])
    page.fill("#f-training-learning_rate", "-1")
    page.wait_for_selector('.field-error[data-for="training.learning_rate"]:not(:empty)')
    assert page.locator("#submit-job").is_disabled()
    page.fill("#f-name", "watched")
    page.click("summary >> text=LoRA")  # a folded section
    page.fill("#f-training-learning_rate", "0.005")
    for field, value in {"data-cutoff_len": "64", "lora-r": "4", "training-max_steps": "40",
                         "training-per_device_train_batch_size": "2", "training-logging_steps": "1",
                         "training-save_steps": "20", "training-optim": "adamw_torch"}.items():
        if page.locator(f"#f-{field}").evaluate("e => e.tagName") == "SELECT":
            page.select_option(f"#f-{field}", value)
        else:
            page.fill(f"#f-{field}", value)
    page.wait_for_selector("#validity.ok")
    page.wait_for_selector("#estimates >> text=total steps")
    assert "40" in page.locator("#estimates").inner_text()
    screenshot(page, "2-new-job")
    page.click("#submit-job")

    # The job page follows the stream: the curve grows while the job trains.
    page.wait_for_selector("#progress")
    job_id = int(page.url.rsplit("/", 1)[1])
    deadline = time.monotonic() + 120
    while not (0 < (first := loss_points(page)) < 40):
        assert time.monotonic() < deadline, "no loss point drawn while the job trained"
        time.sleep(0.05)
    page.wait_for_function("() => document.querySelector('#loss-chart polyline[data-series=\"loss\"]')"
                           ".getAttribute('points').split(' ').length === 40", timeout=120_000)
    assert loss_points(page) > first
    page.wait_for_selector("#progress >> text=40 / 40")
    page.wait_for_selector('.page-head [data-status="succeeded"]', timeout=60_000)
    page.wait_for_selector('#checkpoints tr[data-step="40"]')
    page.wait_for_selector("#events >> text=job.succeeded")
    events = page.locator("#events tbody code").all_inner_texts()
    assert events.count("job.running") == 1 and events.count("checkpoint.saved") == 2, events
    page.click("#log-scale")
    screenshot(page, "3-job-succeeded")
    with page.expect_download() as downloaded:
        page.click('#checkpoints tr[data-step="40"] button')
    assert downloaded.value.suggested_filename == f"job-{job_id}-checkpoint-40.tar"

    # A long job, cancelled with its button after a confirmation.
    with dashboard.client() as api:
        spec = {"base_model": "tiny", "dataset_id": dataset["id"], "name": "cancelled one",
                "data": {"cutoff_len": 64}, "lora": {"r": 4},
                "training": {"max_steps": 100000, "per_device_train_batch_size": 2, "logging_steps": 1,
                             "save_steps": 100000, "optim": "adamw_torch", "learning_rate": 1e-3}}
        long_job = api.post("/jobs", json=spec).json()
    page.goto(f"{dashboard.url}/ui/#/jobs")
    page.wait_for_selector(f'tr[data-job="{long_job["id"]}"] [data-status="running"]', timeout=60_000)
    screenshot(page, "4-jobs")
    page.click(f'tr[data-job="{long_job["id"]}"] a')
    page.wait_for_function("() => document.querySelector('#loss-chart polyline') !== null", timeout=60_000)
    page.click("#cancel-button")
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-ok")
    page.wait_for_selector('.page-head [data-status="cancelled"]', timeout=60_000)
    with dashboard.client() as api:
        assert api.get(f"/jobs/{long_job['id']}").json()["status"] == "cancelled"
    assert page.locator("#cancel-button").is_disabled() and page.locator("#resume-button").is_enabled()

    page.goto(f"{dashboard.url}/ui/#/compare?ids={job_id},{long_job['id']}")
    page.wait_for_selector("#compare-chart polyline >> nth=1")
    screenshot(page, "5-compare")
    page.goto(f"{dashboard.url}/ui/#/jobs?status=cancelled")
    page.wait_for_selector(f'tr[data-job="{long_job["id"]}"]')
    assert page.locator(f'tr[data-job="{job_id}"]').count() == 0


def test_upload_refuses_a_bad_dataset_line_and_previews_a_good_one(dashboard, page, tmp_path):
    sign_in(page, dashboard)
    page.click("text=Datasets")
    page.expected_errors.append("status of 422")  # the browser reports the refused upload's answer
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n" + '{"instruction": "no output"}\n')
    page.set_input_files("#dataset-file", str(bad))
    page.click("#upload-form button[type=submit]")
    error = page.wait_for_selector('.line-errors li[data-line="2"]')
    assert error.inner_text().startswith("line 2:") and "output" in error.inner_text()
    screenshot(page, "6-datasets-refused")

    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl(DEMO_ROWS))
    page.set_input_files("#dataset-file", str(good))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-outcome .ok")
    page.wait_for_selector("#preview .row-preview >> nth=4")
    assert DEMO_ROWS[0]["instruction"] in page.locator("#preview").inner_text()
    screenshot(page, "7-datasets")
    page.click('tr[data-dataset="1"] >> text=Delete')
    page.click("#confirm-ok")
    page.wait_for_selector("text=Deleted dataset #1.")
    with dashboard.client() as api:
        assert api.get("/datasets/1").status_code == 404
