"""The sweep page in headless Chromium: trials sorted by the metric (and by a parameter on a click),
the best marked, the metric-by-parameter chart and the trials' curves; a trial that ends shows up
live (the sweep's stream)."""

from tests.browser.conftest import screenshot, sign_in
from tests.e2e.test_training import DEMO_ROWS
from tests.integration.conftest import jsonl
from tests.integration.test_sweeps import run_trial


def test_the_sweep_page_sorts_trials_and_draws_their_metric(dashboard, page):
    with dashboard.client() as api:
        dataset = api.post("/datasets", files={"file": ("demo.jsonl", jsonl(DEMO_ROWS))}).json()
        sweep = api.post("/sweeps", json={
            "name": "lr", "base": {"base_model": "tiny", "dataset_id": dataset["id"], "training": {"max_steps": 3}},
            "parameters": {"training.learning_rate": {"values": [1e-4, 1e-3, 1e-2]}},
            "metric": {"name": "loss"}, "max_concurrent_trials": 3}).json()
    jobs = [t["job_id"] for t in sweep["trials"]]
    run_trial(jobs[0], {1: 3.0, 2: 2.0, 3: 1.5})
    run_trial(jobs[1], {1: 3.0, 2: 1.0, 3: 0.5})

    sign_in(page, dashboard)
    page.click('#nav a[data-page="sweeps"]')
    page.click(f'#sweeps-table tr[data-sweep="{sweep["id"]}"] a')
    page.wait_for_selector('#trials-table tr[data-trial="1"] .badge.best')
    assert page.locator("#trials-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.trial)") == ["1", "0", "2"]
    page.click('#trials-table th[data-sort="training.learning_rate"]')
    assert page.locator("#trials-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.trial)") == ["0", "1", "2"]
    assert page.locator("#sweep-scatter circle").count() == 2
    page.wait_for_selector('#sweep-curves polyline[data-series^="#1 "]')

    run_trial(jobs[2], {1: 3.0, 2: 0.4, 3: 0.2})  # arrives through the stream: the sweep ends
    page.wait_for_selector('#trials-table tr[data-trial="2"] .badge.best')
    page.wait_for_selector('.page-head .badge[data-status="succeeded"]')
    assert page.locator("#cancel-sweep").count() == 0 and "null" not in page.locator(".page-head").inner_text()
    assert page.locator("#sweep-scatter circle").count() == 3
    screenshot(page, "sweep")
