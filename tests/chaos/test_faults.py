"""Each fault a real cluster has, played against a real API, two real workers, PostgreSQL and Redis
(tests/chaos/conftest.py). The tests share the cluster and run in file order; each prints its
figures (CHAOS FIGURE ...), which the README's Reliability section quotes."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.chaos.conftest import figure, job_spec, wait_until

pytestmark = pytest.mark.chaos

FINISHED = {"succeeded", "failed", "cancelled"}
# Long enough in time that a fault seen through the API (progress is written once a second) still
# lands mid-run on an idle machine, where a tiny-model step takes a few tens of milliseconds. No
# periodic checkpoint: only a stop writes one.
LONG = {"max_steps": 200, "save_steps": 1000}
OUTAGE_RUN = {"max_steps": 300, "save_steps": 1000}  # also outlasts the 3 s restart


def get_job(client, job_id: int) -> dict:
    return wait_until(lambda: _ok(client.get(f"/jobs/{job_id}")), 60, f"job {job_id} to be readable")


def _ok(response: httpx.Response):
    return response.json() if response.status_code == 200 else None


def wait_for(client, job_id: int, statuses=FINISHED, timeout: float = 300) -> dict:
    return wait_until(lambda: (job := get_job(client, job_id))["status"] in statuses and job, timeout,
                      f"job {job_id} to become one of {statuses}")


def step_of(client, job_id: int) -> int:
    return (get_job(client, job_id)["progress"] or {}).get("step") or 0


def events(client, job_id: int) -> list[dict]:
    return client.get(f"/jobs/{job_id}/events", params={"limit": 500}).json()["items"]


def metrics(client, job_id: int) -> dict[tuple[str, int], float]:
    points, cursor = [], None
    while True:
        page = client.get(f"/jobs/{job_id}/metrics", params={"limit": 500, **({"cursor": cursor} if cursor else {})}).json()
        points += page["items"]
        if not (cursor := page["next_cursor"]):
            break
    return {(p["name"], p["step"]): p["value"] for p in points
            if not p["name"].endswith(("_runtime", "_per_second")) and p["name"] != "train_loss"}


def submit(client, spec: dict, **headers) -> dict:
    response = client.post("/jobs", json=spec, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def times_trained(client, job_id: int) -> int:
    return sum(e["type"] == "job.running" for e in events(client, job_id))


def test_redis_restart_without_persistence_loses_no_queued_job(cluster, dataset_id):
    """Three jobs wait in Redis (no worker is up yet); Redis restarts and forgets them."""
    with cluster.client() as client:
        jobs = [submit(client, job_spec(dataset_id, max_steps=4)) for _ in range(3)]
        wait_until(lambda: cluster.redis.queue_length() == 3, 30, "three messages in the queue")
        cluster.redis.stop()
        cluster.redis.start()
        assert cluster.redis.queue_length() == 0
        cluster.ensure_workers(2)
        finished = [wait_for(client, job["id"]) for job in jobs]
        ran = [times_trained(client, job["id"]) for job in jobs]
        figure("redis restart with 3 queued jobs", f"{sum(j['status'] == 'succeeded' for j in finished)} of 3 "
               f"succeeded, trained {ran} times")
        assert [job["status"] for job in finished] == ["succeeded"] * 3
        assert ran == [1, 1, 1]


def test_broker_down_at_submit_keeps_the_job_queued_and_sends_it_when_it_is_back(cluster, dataset_id):
    cluster.ensure_workers(2)
    spec = job_spec(dataset_id, max_steps=4)
    with cluster.client() as client:
        cluster.redis.stop()
        try:
            health = client.get("/health")
            assert health.status_code == 503 and health.json()["broker"].startswith("unavailable")
            assert health.json()["database"] == "ok"
            job = submit(client, spec, **{"Idempotency-Key": "broker-down"})
            assert job["status"] == "queued"
            assert "run.handoff_pending" in [e["type"] for e in events(client, job["id"])]
            again = client.post("/jobs", json=spec, headers={"Idempotency-Key": "broker-down"})
            assert again.status_code == 200 and again.json()["id"] == job["id"]
            assert again.json()["status"] == "queued"
        finally:
            cluster.redis.start()
        finished = wait_for(client, job["id"])
        figure("broker down at submit", f"job queued (201, run.handoff_pending), then {finished['status']} "
               f"once the broker was back, trained {times_trained(client, job['id'])} time(s)")
        assert finished["status"] == "succeeded" and times_trained(client, job["id"]) == 1


class Poller:
    """Reads a job through the API as fast as it answers, counting status codes."""

    def __init__(self, client, job_id: int):
        self.codes: dict[int, int] = {}
        self.retry_after_missing = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, args=(client, job_id), daemon=True)
        self.thread.start()

    def _poll(self, client, job_id: int) -> None:
        while not self.done.is_set():
            try:
                response = client.get(f"/jobs/{job_id}")
            except httpx.HTTPError:
                continue
            self.codes[response.status_code] = self.codes.get(response.status_code, 0) + 1
            if response.status_code == 503 and "retry-after" not in response.headers:
                self.retry_after_missing += 1
            time.sleep(0.05)

    def stop(self) -> dict[int, int]:
        self.done.set()
        self.thread.join()
        return self.codes


def test_database_restart_and_outage_mid_run_kill_nothing_and_lose_no_metric(cluster, dataset_id):
    cluster.ensure_workers(2)
    with cluster.client() as client, cluster.client() as polling:
        job = submit(client, job_spec(dataset_id, **OUTAGE_RUN))
        wait_until(lambda: step_of(client, job["id"]) >= 3, 120, "training to begin")
        poller = Poller(polling, job["id"])
        cluster.postgres.stop()
        time.sleep(3)
        cluster.postgres.start()
        restarted_at_step = step_of(client, job["id"])
        assert restarted_at_step < OUTAGE_RUN["max_steps"], "the job finished before the outage"
        cluster.postgres.stop()
        time.sleep(15)
        cluster.postgres.start()
        finished = wait_for(client, job["id"])
        codes = poller.stop()
        attempts = finished["attempts"]
        losses = sorted(step for name, step in metrics(client, job["id"]) if name == "loss")
        killed = sum(e["type"] == "run.traceback" for e in events(client, job["id"]))
        figure("postgres restart 3 s + stop 15 s mid-run",
               f"status {finished['status']}, attempts {len(attempts)}, training processes killed {killed}, "
               f"API answers {dict(sorted(codes.items()))}, loss points {len(losses)} of {OUTAGE_RUN['max_steps']}")
        assert finished["status"] == "succeeded", finished
        assert len(attempts) == 1 and attempts[0]["exit_code"] == 0 and killed == 0
        assert 500 not in codes and codes.get(503, 0) > 0 and poller.retry_after_missing == 0
        assert losses == list(range(1, OUTAGE_RUN["max_steps"] + 1))
        health = client.get("/health").json()
        assert health == {"status": "ok", "database": "ok", "broker": "ok", "storage": "ok",
                          "store": "the local data folder"}


@pytest.fixture(scope="module")
def uninterrupted(cluster, dataset_id) -> dict[tuple[str, int], float]:
    """The metrics of a run no fault stopped, for comparison."""
    cluster.ensure_workers(2)
    with cluster.client() as client:
        job = wait_for(client, submit(client, job_spec(dataset_id, **LONG))["id"])
        assert job["status"] == "succeeded", job
        return metrics(client, job["id"])


@pytest.mark.parametrize("target", ["worker", "process group"])
def test_sigterm_checkpoints_and_hands_the_job_to_the_other_worker(cluster, dataset_id, uninterrupted, target):
    cluster.ensure_workers(2)
    with cluster.client() as client:
        job = submit(client, job_spec(dataset_id, **LONG))
        wait_until(lambda: step_of(client, job["id"]) >= 5, 120, "training to begin", every=0.05)
        running_on = get_job(client, job["id"])["attempts"][0]["worker"]
        worker = cluster.workers[running_on]
        if target == "worker":
            worker.send_signal(signal.SIGTERM)
        else:
            os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=120) == 0, "the worker did not drain and exit"
        cluster.workers.pop(running_on)
        finished = wait_for(client, job["id"])
        first, second = finished["attempts"]
        checkpoints = {c["step"] for c in client.get(f"/jobs/{job['id']}/checkpoints").json()}
        figure(f"SIGTERM to the {target} mid-run", f"attempt 1 {first['status']} ({first['error']['code']}) "
               f"with a checkpoint of step {second['resume_step']}; attempt 2 ({second['reason']}) on the other "
               f"worker from it: {finished['status']}; restarts used 0")
        assert first["error"]["code"] == "worker_shutdown" and second["reason"] == "handed_back"
        assert second["resume_step"] in checkpoints and second["resume_step"] >= 5
        assert second["worker"] != first["worker"]
        assert finished["status"] == "succeeded"
        assert metrics(client, job["id"]) == uninterrupted


def test_concurrent_submits_create_one_job_per_output_dir_and_respect_the_queued_limit(cluster, dataset_id):
    spec = {**job_spec(dataset_id), "resources": {"queue": "nobody"}}  # stays queued: no worker consumes it
    with cluster.client() as client:
        def post(body):
            return client.post("/jobs", json=body).status_code

        with ThreadPoolExecutor(10) as pool:
            same_dir = list(pool.map(post, [{**spec, "output_dir": "shared-folder"}] * 10))
        with ThreadPoolExecutor(10) as pool:
            for job in client.get("/jobs", params={"status": "queued"}).json()["items"]:
                client.post(f"/jobs/{job['id']}/cancel")
            limited = list(pool.map(post, [{**spec, "output_dir": f"limited-{n}"} for n in range(10)]))
        for job in client.get("/jobs", params={"status": "queued"}).json()["items"]:
            client.post(f"/jobs/{job['id']}/cancel")
    figure("10 concurrent submits, one output_dir", f"{same_dir.count(201)} created, {same_dir.count(422)} refused (422)")
    figure("10 concurrent submits, queued limit 3", f"{limited.count(201)} admitted, {limited.count(429)} refused (429)")
    assert sorted(same_dir) == [201] + [422] * 9
    assert sorted(limited) == [201] * 3 + [429] * 7


def test_api_killed_mid_upload_leaves_no_row_and_no_file(cluster):
    rows = "".join(json.dumps({"text": f"row {n} " + "x" * 80}) + "\n" for n in range(300_000)).encode()
    folder = cluster.data_dir / "datasets"
    with cluster.client() as client:
        before = client.get("/datasets", params={"limit": 200}).json()["items"]
        files_before = sorted(p.name for p in folder.iterdir())

        def upload():
            try:
                client.post("/datasets", files={"file": ("big.jsonl", rows)})
            except httpx.HTTPError:
                pass

        uploading = threading.Thread(target=upload, daemon=True)
        uploading.start()
        wait_until(lambda: list(folder.glob("upload-*.part")), 120, "the upload to be validated", every=0.02)
        cluster.kill_api()
        uploading.join()
        left_by_kill = [p.name for p in folder.glob("upload-*.part")]
        cluster.start_api()
        after = client.get("/datasets", params={"limit": 200}).json()["items"]
        files_after = sorted(p.name for p in folder.iterdir())
    figure("kill -9 of the API mid-upload, then a restart",
           f"staging files left by the kill {len(left_by_kill)}, after the restart {len(set(files_after) - set(files_before))}; "
           f"new rows {len(after) - len(before)}")
    assert left_by_kill, "the kill came too late to test anything"
    assert after == before and files_after == files_before


def test_disk_full_at_a_save_fails_with_its_own_code_and_keeps_earlier_checkpoints(cluster, dataset_id):
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    cluster.ensure_workers(1)
    with cluster.client() as client:
        tenant_dirs = list(cluster.data_dir.glob("jobs/tenant-*"))
        output = (tenant_dirs[0] if tenant_dirs else cluster.data_dir / "jobs" / "tenant-1") / "small-disk"
        output.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(output)], check=True)
        try:
            # 100 steps between the first checkpoint and the save that cannot fit: time to shrink the
            # disk, even on an idle machine with a spare training process (no start-up at all).
            spec = {**job_spec(dataset_id, max_steps=200, save_steps=50), "output_dir": "small-disk"}
            job = submit(client, spec)
            wait_until(lambda: client.get(f"/jobs/{job['id']}/checkpoints").json(), 120, "the first checkpoint")
            one_checkpoint = shutil.disk_usage(output).used
            # Room for one more checkpoint, not for two: the third save cannot fit.
            subprocess.run(["mount", "-o", f"remount,size={int(one_checkpoint * 2.6)}", str(output)], check=True)
            job = wait_for(client, job["id"])
            checkpoints = [c["step"] for c in client.get(f"/jobs/{job['id']}/checkpoints").json() if not c["deleted"]]
            on_disk = sorted(int(p.name.split("-")[1]) for p in output.glob("checkpoint-*"))
            figure("disk full at a save", f"{job['status']} ({(job['error'] or {}).get('code')}); checkpoints "
                   f"{checkpoints} intact")
            assert job["status"] == "failed" and job["error"]["code"] == "disk_full", job
            assert "save_total_limit" in job["error"]["advice"]
            assert checkpoints == on_disk == [50, 100]
            subprocess.run(["mount", "-o", "remount,size=64m", str(output)], check=True)  # space freed
            resumed = client.post(f"/jobs/{job['id']}/resume")
            assert resumed.status_code == 202, resumed.text
            done = wait_for(client, job["id"])
            figure("disk full, resumed after freeing space", f"{done['status']} from step {done['attempts'][-1]['resume_step']}")
            assert done["status"] == "succeeded" and done["attempts"][-1]["resume_step"] == 100
        finally:
            subprocess.run(["umount", "-l", str(output)], check=False)
