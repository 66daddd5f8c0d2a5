"""GET /jobs/{id}/metrics: cursor pages that start at an index position, and series thinned for
charts (first, last and extremes kept), on both backends."""

import math

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from tests.integration.conftest import make_spec


def record(job_id: int, points: list[tuple[int, dict[str, float]]]) -> None:
    from db.engine import session_scope
    from db.metrics import record_metric_points
    from db.runs import latest_run

    with session_scope() as session:
        run = latest_run(session, job_id)
        record_metric_points(session, job_id, run.id, [(step, None, values) for step, values in points])


def loss_at(step: int) -> float:
    """A wavy, noisy curve with one spike and one dip that the thinning has to keep."""
    return {317: 50.0, 642: -50.0}.get(step, 2.0 + math.sin(step / 40) + (step * 7919 % 13) / 100)


@pytest.fixture
def job(client, dataset) -> dict:
    return client.post("/jobs", json=make_spec(dataset["id"])).json()


def test_cursor_pages_visit_every_point_once_in_step_then_name_order(client, job):
    record(job["id"], [(step, {"loss": step, "eval_loss": -step, "lr": 0.1}) for step in range(1, 41)])
    for names in ([], ["loss"], ["loss", "eval_loss"]):
        seen, cursor = [], None
        while True:
            params = {"name": names, "limit": 7, **({"cursor": cursor} if cursor else {})}
            page = client.get(f"/jobs/{job['id']}/metrics", params=params).json()
            seen += [(p["step"], p["name"]) for p in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        expected = sorted((step, name) for step in range(1, 41) for name in (names or ["loss", "eval_loss", "lr"]))
        assert seen == expected, names


def test_max_points_keeps_first_last_and_extremes_of_each_name(client, job):
    steps = range(5, 1005)
    record(job["id"], [(step, {"loss": loss_at(step), "grad_norm": -loss_at(step)}) for step in steps])
    record(job["id"], [(step, {"eval_loss": step / 10}) for step in (100, 200, 300)])
    metrics = f"/jobs/{job['id']}/metrics"

    page = client.get(metrics, params={"max_points": 20}).json()
    assert page["next_cursor"] is None
    by_name: dict[str, list[dict]] = {}
    for point in page["items"]:
        by_name.setdefault(point["name"], []).append(point)
    assert set(by_name) == {"loss", "grad_norm", "eval_loss"}
    for name in ("loss", "grad_norm"):
        kept = [p["step"] for p in by_name[name]]
        assert 4 < len(kept) <= 20 and kept == sorted(set(kept))
        assert {5, 1004, 317, 642} <= set(kept), name  # first, last, highest, lowest
        assert all(p["value"] == pytest.approx(loss_at(p["step"]) * (1 if name == "loss" else -1))
                   for p in by_name[name])
    # A short series comes back whole.
    assert [p["step"] for p in by_name["eval_loss"]] == [100, 200, 300]
    assert [(p["step"], p["name"]) for p in page["items"]] == sorted((p["step"], p["name"]) for p in page["items"])

    # One name, a step range, the fewest points allowed.
    narrow = client.get(metrics, params={"name": "loss", "max_points": 4, "min_step": 300, "max_step": 700}).json()
    kept = [p["step"] for p in narrow["items"]]
    assert {p["name"] for p in narrow["items"]} == {"loss"}
    assert len(kept) <= 4 and {300, 700, 317, 642} == set(kept)
    assert client.get(metrics, params={"max_points": 3}).status_code == 422
    assert client.get(metrics, params={"name": "nothing", "max_points": 10}).json()["items"] == []


def explain(session, query) -> str:
    sql = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    return "\n".join(session.scalars(text(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}")))


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_cursor_is_where_the_index_scan_starts(client, job):
    """Deep in a long series a page reads only its own rows: the cursor is an Index Cond, and no
    filter throws away the rows before it."""
    from db.engine import session_scope
    from db.metrics import metrics_query

    with session_scope() as session:
        session.execute(text(
            "INSERT INTO metric_points (job_id, name, step, value, created_at) "
            "SELECT :job, name, step, step, now() FROM generate_series(1, 20000) AS step, "
            "unnest(ARRAY['eval_loss', 'loss']) AS name"), {"job": job["id"]})
        session.execute(text("ANALYZE metric_points"))
    with session_scope() as session:
        every = explain(session, metrics_query(job["id"], names=None, min_step=None, max_step=None,
                                               after=(15000, "eval_loss"), limit=100))
        assert "ix_metric_points_job_step_name" in every, every
        condition = every.split("Index Cond:")[1].splitlines()[0]
        assert "ROW(step, (name)::text) > ROW(15000, 'eval_loss'" in condition, every
        assert "Filter" not in every, every
        one = explain(session, metrics_query(job["id"], names=["loss"], min_step=None, max_step=None,
                                             after=(15000, "loss"), limit=100))
        assert "step >= 15000" in one.split("Index Cond:")[1].splitlines()[0], one
        removed = [int(line.split(":")[1]) for line in one.splitlines() if "Rows Removed by Filter" in line]
        assert removed in ([], [1]), one  # the cursor's own point at most
