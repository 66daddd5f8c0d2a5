"""A preference job's page charts its reward margins and accuracies (the points recorded as the
training process records them)."""

from db.engine import session_scope
from db.metrics import record_metric_points
from db.runs import latest_run
from tests.browser.conftest import screenshot, sign_in
from tests.integration.conftest import jsonl

PAIRS = [{"prompt": f"q {i}", "chosen": "yes", "rejected": "no"} for i in range(8)]


def test_the_job_page_charts_reward_margins_and_accuracies(dashboard, page):
    with dashboard.client() as api:
        dataset = api.post("/datasets", files={"file": ("pairs.jsonl", jsonl(PAIRS))}).json()
        job = api.post("/jobs", json={"base_model": "tiny", "dataset_id": dataset["id"], "objective": "dpo",
                                      "training": {"max_steps": 4}}).json()
    with session_scope() as session:
        run_id = latest_run(session, job["id"]).id
        record_metric_points(session, job["id"], run_id, [
            (step, None, {"loss": 0.7 - 0.1 * step, "rewards/margins": 0.5 * step, "rewards/accuracies": step / 4})
            for step in range(1, 5)])

    sign_in(page, dashboard)
    page.goto(f"{dashboard.url}/ui/#/jobs/{job['id']}")
    margins = page.locator('#preference-chart polyline[data-series="rewards/margins"]')
    margins.wait_for()
    assert len(margins.get_attribute("points").split()) == 4
    assert page.locator('#preference-chart polyline[data-series="rewards/accuracies"]').count() == 1
    assert page.locator("text=rewards: margins / accuracies").is_visible()
    screenshot(page, "preference-chart")
