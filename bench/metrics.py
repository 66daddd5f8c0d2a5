"""GET /jobs/{id}/metrics on a job with 1,000,000 points (PostgreSQL, a real `traindock api`):
p50/p99 of a chart request (`max_points=1000`), and the time of one cursor page of the loss
series at several depths. Goals: chart p50 < 50 ms; every page within 2x the first page's time.

    python bench/metrics.py [--requests 30]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from db.metric_blocks import rebuild_blocks  # noqa: E402
from http_load import run_load  # noqa: E402
from live_api import DEFAULT_DATABASE, DEFAULT_REDIS, LiveApi, live_api  # noqa: E402

LOSS_STEPS = 990_000
EVAL_EVERY = 99  # 10,000 eval_loss points: 1,000,000 in all
DEPTHS = (0.0, 0.01, 0.1, 0.5, 0.9, 0.999)


def fill(api: LiveApi) -> int:
    headers = {"Authorization": f"Bearer {api.key}"}
    dataset = httpx.post(api.url + "/datasets", headers=headers, files={"file": ("d.jsonl", b'{"text": "hi"}\n')})
    spec = {"base_model": "acme/tiny-llama", "dataset_id": dataset.json()["id"], "training": {"max_steps": 4}}
    job = httpx.post(api.url + "/jobs", headers=headers, json=spec).json()["id"]
    started = time.perf_counter()
    with api.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO metric_points (job_id, name, step, epoch, value, created_at) "
            "SELECT :job, 'loss', step, step / 1000.0, 2 + sin(step / 5000.0) + random() / 10, now() "
            "FROM generate_series(1, :steps) AS step"), {"job": job, "steps": LOSS_STEPS})
        connection.execute(text(
            "INSERT INTO metric_points (job_id, name, step, epoch, value, created_at) "
            "SELECT :job, 'eval_loss', step, step / 1000.0, 2 + random(), now() "
            "FROM generate_series(:every, :steps, :every) AS step"),
            {"job": job, "steps": LOSS_STEPS, "every": EVAL_EVERY})
    written = time.perf_counter()
    with api.engine.begin() as connection:  # what record_metric_points keeps up to date as it writes
        rebuild_blocks(connection, job)
    summarized = time.perf_counter()
    with api.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE metric_points, metric_blocks"))
        count = connection.scalar(text("SELECT count(*) FROM metric_points WHERE job_id = :job"), {"job": job})
        blocks = connection.scalar(text("SELECT count(*) FROM metric_blocks WHERE job_id = :job"), {"job": job})
    api.engine.dispose()
    print(f"job {job}: {count:,} metric points written in {written - started:.1f} s, "
          f"{blocks:,} block summaries of them in {summarized - written:.1f} s")
    return job


def timed(api: LiveApi, path: str, requests: int) -> list[float]:
    result = run_load(api.port, {"authorization": f"Bearer {api.key}"}, lambda _i: ("GET", path, None),
                      concurrency=1, requests=requests, seconds=60)
    assert set(result.statuses) == {200}, result.statuses
    return [1000 * latency for latency in result.latencies_s]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--port", type=int, default=18141)
    parser.add_argument("--requests", type=int, default=30, help="Requests per measurement.")
    options = parser.parse_args()

    with live_api(options.database_url, options.redis_url, options.port, workers=1) as api:
        job = fill(api)
        metrics = f"/jobs/{job}/metrics"
        timed(api, metrics + "?name=loss&max_points=1000", 2)  # warm
        for query in ("name=loss&max_points=1000", "max_points=1000"):
            times = sorted(timed(api, f"{metrics}?{query}", options.requests))
            points = len(httpx.get(f"{api.url}{metrics}?{query}", headers={"Authorization": f"Bearer {api.key}"},
                                   timeout=60).json()["items"])
            print(f"chart {query:<28} {points:>5} points  p50 {statistics.median(times):6.1f} ms  "
                  f"p99 {times[min(len(times) - 1, int(0.99 * len(times)))]:6.1f} ms  (goal p50 < 50 ms)")
        for names in ("name=loss", "name=loss&name=eval_loss"):
            first = None
            for depth in DEPTHS:
                step = int(depth * LOSS_STEPS)
                cursor = f"&cursor={step}:loss" if step else ""
                page = statistics.median(timed(api, f"{metrics}?{names}&limit=500{cursor}", options.requests))
                first = first or page
                print(f"page of 500, {names:<25} at step {step:>7,}: {page:6.1f} ms  "
                      f"({page / first:4.2f}x the first page; goal <= 2x)")


if __name__ == "__main__":
    main()
