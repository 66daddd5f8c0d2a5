"""Load on a real `traindock api` (PostgreSQL + Redis, 127.0.0.1 only), bounded in requests and
seconds: POST /jobs, GET /jobs/{id}, GET /jobs, and GET /jobs/{id}/metrics pages at every depth
of a long series, at each concurrency. Prints req/s, p50, p99, errors, the API's CPU per request
(from /proc) and the database sessions open afterwards.
Goals on a 2-core machine, client included: POST /jobs >= 300 req/s at concurrency 8 with
p99 < 100 ms; GET /jobs/{id} >= 1,000 req/s; no 5xx; open sessions within the pool.

    python bench/api_load.py [--workers 2] [--concurrency 1 8 32] [--requests 3000] [--seconds 15]
"""

import argparse
import json
import random
import sys
from pathlib import Path

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_load import Result, run_load  # noqa: E402
from live_api import DEFAULT_DATABASE, DEFAULT_REDIS, LiveApi, live_api  # noqa: E402

JOBS = 200
SERIES_STEPS = 100_000  # of each of two names, for the metrics pages
SPEC = {"base_model": "acme/tiny-llama", "dataset_id": 0, "training": {"max_steps": 4, "logging_steps": 1}}


def prepare(api: LiveApi) -> tuple[bytes, int]:
    """A dataset to name in the specs, and a job with a long metric series."""
    headers = {"Authorization": f"Bearer {api.key}"}
    rows = "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(100)).encode()
    dataset = httpx.post(api.url + "/datasets", headers=headers, files={"file": ("d.jsonl", rows)}).json()
    spec = json.dumps({**SPEC, "dataset_id": dataset["id"]}).encode()
    response = httpx.post(api.url + "/jobs", headers={**headers, "content-type": "application/json"},
                          content=spec, timeout=30)
    assert response.status_code == 201, response.text
    job = response.json()
    for _ in range(JOBS - 1):  # for GET /jobs/{id} and GET /jobs, whatever runs first
        httpx.post(api.url + "/jobs", headers={**headers, "content-type": "application/json"}, content=spec)
    with api.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO metric_points (job_id, name, step, value, created_at) "
            "SELECT :job, name, step, random(), now() FROM generate_series(1, :steps) AS step, "
            "unnest(ARRAY['eval_loss', 'loss']) AS name"), {"job": job["id"], "steps": SERIES_STEPS})
        connection.execute(text("ANALYZE metric_points"))
    api.engine.dispose()
    return spec, job["id"]


def scenarios(spec: bytes, metrics_job: int, first_job: int):
    def post_job(_i: int):
        return "POST", "/jobs", spec

    def get_job(i: int):
        return "GET", f"/jobs/{first_job + i % JOBS}", None

    def list_jobs(_i: int):
        return "GET", "/jobs", None

    def metrics_page(_i: int):
        step = random.randrange(SERIES_STEPS)
        return "GET", f"/jobs/{metrics_job}/metrics?name=loss&name=eval_loss&limit=500&cursor={step}:loss", None

    return {"POST /jobs": post_job, "GET /jobs/{id}": get_job, "GET /jobs": list_jobs,
            "GET metrics page (any depth)": metrics_page}


def report(name: str, concurrency: int, result: Result, cpu_s: float, sessions: int) -> None:
    done = len(result.latencies_s)
    print(f"{name:<30} c={concurrency:<3} {done:>6} req {result.rate:>8.1f} req/s  p50 {result.median_ms:>7.1f} ms  "
          f"p99 {result.percentile_ms(0.99):>7.1f} ms  errors {result.errors} (5xx {result.server_errors})  "
          f"API CPU {1000 * cpu_s / max(done, 1):>5.2f} ms/req  DB sessions {sessions}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--port", type=int, default=18140)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=3000, help="Most requests per scenario and concurrency.")
    parser.add_argument("--seconds", type=float, default=15, help="Most seconds per scenario and concurrency.")
    parser.add_argument("--only", help="Run only the scenarios whose name contains this.")
    options = parser.parse_args()

    with live_api(options.database_url, options.redis_url, options.port, options.workers) as api:
        spec, metrics_job = prepare(api)
        headers = {"authorization": f"Bearer {api.key}"}
        pool = api.workers * (16 + 4)
        print(f"traindock api --workers {api.workers}; sessions allowed: {pool} (+1 for this script)")
        for name, make in scenarios(spec, metrics_job, metrics_job).items():
            if options.only and options.only not in name:
                continue
            for concurrency in options.concurrency:
                run_load(api.port, headers, make, concurrency=min(concurrency, 2), requests=20, seconds=5)  # warm
                before = api.cpu_seconds()
                result = run_load(api.port, headers, make, concurrency=concurrency,
                                  requests=options.requests, seconds=options.seconds)
                report(name, concurrency, result, api.cpu_seconds() - before, api.db_sessions())


if __name__ == "__main__":
    main()
