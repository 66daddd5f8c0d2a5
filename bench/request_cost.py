"""What one request costs the database: SQL statements, commits and pool checkouts of POST /jobs,
GET /jobs/{id}, GET /jobs and a metrics page, counted with SQLAlchemy events on an in-process app
over PostgreSQL (the first request of each kind, which verifies the key, is left out).

    python bench/request_cost.py
"""

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from live_api import DEFAULT_DATABASE, DEFAULT_REDIS, LiveApi  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="traindock-bench-") as folder:
        api = LiveApi(options.database_url, options.redis_url, 0, 1, Path(folder) / "data")
        api.reset()
        api.engine.dispose()
        os.environ.update({k: v for k, v in api.env.items() if k.startswith("TRAINDOCK_")})
        count(api.key)


def count(key: str) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from api.app import create_app
    from db.engine import get_engine

    seen: Counter = Counter()
    engine = get_engine()
    event.listen(engine, "before_cursor_execute", lambda *_args: seen.update(["statements"]))
    event.listen(engine, "commit", lambda *_args: seen.update(["commits"]))
    event.listen(engine.pool, "checkout", lambda *_args: seen.update(["checkouts"]))

    with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as client:
        dataset = client.post("/datasets", files={"file": ("d.jsonl", b'{"text": "hi"}\n')}).json()
        spec = {"base_model": "acme/tiny-llama", "dataset_id": dataset["id"], "training": {"max_steps": 4}}
        job = client.post("/jobs", json=spec).json()
        for name, send in (("POST /jobs", lambda: client.post("/jobs", json=spec)),
                           ("GET /jobs/{id}", lambda: client.get(f"/jobs/{job['id']}")),
                           ("GET /jobs", lambda: client.get("/jobs")),
                           ("GET /jobs/{id}/metrics", lambda: client.get(f"/jobs/{job['id']}/metrics"))):
            seen.clear()
            response = send()
            assert response.status_code < 300, response.text
            print(f"{name:<24} {seen['statements']:>2} statements  {seen['commits']} commits  "
                  f"{seen['checkouts']} pool checkouts")


if __name__ == "__main__":
    main()
