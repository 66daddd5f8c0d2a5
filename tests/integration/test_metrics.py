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


def downsampled_both_ways(job_id: int, **query) -> tuple[list, list]:
    from db.engine import session_scope
    from db.metric_series import downsample

    with session_scope() as session:
        by_blocks = downsample(session, job_id, use_blocks=True, **query)
        by_points = downsample(session, job_id, use_blocks=False, **query)
    return [tuple(p) for p in by_blocks], [tuple(p) for p in by_points]


def stored_blocks(job_id: int) -> tuple[list, list]:
    """The blocks as the writes left them, and as rebuilt from the points."""
    from sqlalchemy import select

    from db.engine import session_scope
    from db.metric_blocks import SUMMARY, rebuild_blocks
    from db.models import MetricBlock

    columns = [MetricBlock.name, MetricBlock.size, MetricBlock.block, *(getattr(MetricBlock, c) for c in SUMMARY)]
    order = (MetricBlock.name, MetricBlock.size, MetricBlock.block)
    with session_scope() as session:
        written = [tuple(row) for row in session.execute(select(*columns).where(MetricBlock.job_id == job_id)
                                                         .order_by(*order))]
        rebuild_blocks(session, job_id)
        rebuilt = [tuple(row) for row in session.execute(select(*columns).where(MetricBlock.job_id == job_id)
                                                         .order_by(*order))]
        session.rollback()
    return written, rebuilt


def test_block_summaries_give_the_same_chart_as_the_points(client, job):
    """Random series with gaps, ties, replaced points and a forgotten timeline: the block summaries
    written with the points stay exact, and a chart read from them is the one read from every point."""
    import random

    from db.engine import session_scope
    from db.metrics import delete_after

    rng = random.Random(21)
    written: dict[tuple[str, int], float] = {}

    def write(steps, names=("loss", "eval_loss", "grad_norm")):
        batch = []
        for step in steps:
            values = {}
            for name in names:
                if name == "eval_loss" and step % 7:
                    continue  # a sparse series
                values[name] = float(rng.randint(0, 5)) if name == "grad_norm" else rng.gauss(2, 1)  # ties
            batch.append((step, values))
        for start in range(0, len(batch), 37):  # the training process's batches
            record(job["id"], batch[start:start + 37])
        written.update({(name, step): value for step, values in batch for name, value in values.items()})

    write(range(0, 3000))
    write(rng.sample(range(0, 3000), 300))  # points replaced by upserts, anywhere
    write(range(5000, 9000, 3))  # a gap, then every third step
    with session_scope() as session:
        delete_after(session, job["id"], 7777)  # a resume from step 7777 forgets the later points
    write(range(7778, 11_000))  # and the new timeline writes them again
    with session_scope() as session:
        delete_after(session, job["id"], 10_500)
    write(range(10_400, 10_700), names=("loss",))

    blocks, rebuilt = stored_blocks(job["id"])
    assert blocks == rebuilt and len(blocks) > 300
    for max_points in (4, 10, 50, 101, 1000):
        for min_step, max_step in ((None, None), (0, None), (None, 8000), (131, 9_999), (2999, 5001), (64, 127),
                                   (6000, 6000), (12_000, None)):
            for names in (None, ["loss"], ["grad_norm", "eval_loss"]):
                query = {"names": names, "min_step": min_step, "max_step": max_step, "max_points": max_points}
                by_blocks, by_points = downsampled_both_ways(job["id"], **query)
                assert by_blocks == by_points, query
    # Ranges that cut blocks anywhere, on series whose extremes (and ties) sit at the blocks' ends.
    saws = {"saw": lambda step: step % 64, "antisaw": lambda step: -(step % 64), "saw50": lambda step: step % 50,
            "rising": lambda step: step % 64 + step / 10_000, "falling": lambda step: step % 64 - step / 10_000}
    record(job["id"], [(step, {name: saw(step) for name, saw in saws.items()}) for step in range(0, 4000)])
    for _ in range(100):
        low = rng.randrange(0, 4000)
        query = {"names": list(saws), "min_step": low, "max_step": rng.randrange(low, 4000),
                 "max_points": rng.randrange(4, 60)}
        by_blocks, by_points = downsampled_both_ways(job["id"], **query)
        assert by_blocks == by_points, query
    # The chart's values are the points last written.
    by_blocks, _ = downsampled_both_ways(job["id"], names=["loss", "eval_loss", "grad_norm"], min_step=None,
                                         max_step=None, max_points=100)
    assert all(written[point[2], point[0]] == point[3] for point in by_blocks)


def test_deleting_a_job_deletes_its_block_summaries(client, job):
    from sqlalchemy import func, select

    from db.engine import session_scope
    from db.models import MetricBlock

    record(job["id"], [(step, {"loss": 1.0}) for step in range(200)])
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(MetricBlock)) == 4 + 25  # of 64 and of 8 steps
    client.post(f"/jobs/{job['id']}/cancel")
    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(MetricBlock)) == 0


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_chart_of_a_long_series_reads_block_summaries_not_its_points(client, job):
    """A chart of 200,000 points reads the ~3,000 summaries and the points of the blocks that
    straddle a bucket's edge (a nested loop of index probes), never the whole series."""
    from db.engine import session_scope
    from db.metric_blocks import rebuild_blocks
    from db.metric_series import blocks_query, downsample

    with session_scope() as session:
        session.execute(text(
            "INSERT INTO metric_points (job_id, name, step, value, created_at) "
            "SELECT :job, 'loss', step, random(), now() FROM generate_series(1, 200000) AS step"), {"job": job["id"]})
        rebuild_blocks(session, job["id"])
        session.execute(text("ANALYZE metric_points"))
        session.execute(text("ANALYZE metric_blocks"))
    with session_scope() as session:
        by_blocks = downsample(session, job["id"], names=["loss"], min_step=None, max_step=None, max_points=1000)
        by_points = downsample(session, job["id"], names=["loss"], min_step=None, max_step=None, max_points=1000,
                               use_blocks=False)
        assert [tuple(p) for p in by_blocks] == [tuple(p) for p in by_points]
        plan = explain(session, blocks_query(job["id"], "loss", 1, 200_000, -(-200_000 // 499), postgres=True))
    assert "Seq Scan" not in plan, plan
    probes = [line for line in plan.splitlines() if "on metric_points" in line]
    assert len(probes) == 1 and "Index" in probes[0], plan
    rows, loops = (int(probes[0].split(f"{what}=")[1].split()[0].rstrip(")")) for what in ("rows", "loops"))
    assert rows * loops < 200_000 // 4, plan  # the points of ~500 blocks of 64 steps, at most
