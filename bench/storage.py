"""Object storage against the local data folder: the same job (tiny model, a checkpoint every 50
steps) through the embedded service with TRAINDOCK_STORAGE_URL unset and set to an S3 bucket
(moto's server in its own process, on this machine), rounds interleaved, each in a fresh service.
Prints the median job wall times (submit to succeeded) and their ratio (goal <= 1.05); on a busy
machine that ratio is mostly noise, so also what the object store itself cost the job: the time
training waited for uploads (`result.storage_wait_s`: the next save waiting for the last upload,
the final model's upload) as a share of the job's wall time. Then the store's upload and download
throughput for one large file (multipart).

    python bench/storage.py [--rounds 3] [--steps 200] [--mib 256]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from tests.e2e.object_store import free_port, s3_client, start_moto  # noqa: E402


def one_job(steps: int) -> dict:
    """In a child process whose environment picks the store: the job's wall time and its wait
    for the store."""
    from embedded import embedded_service

    with embedded_service("tiny", "bench-storage-") as service:
        spec = {"base_model": "bench-model", "dataset_id": service.dataset["id"],
                "data": {"cutoff_len": 128, "val_set_size": 0}, "lora": {"r": 8},
                "training": {"max_steps": steps, "per_device_train_batch_size": 4, "optim": "adamw_torch",
                             "logging_steps": 10, "save_steps": 50, "save_total_limit": 2}}
        time.sleep(15)  # the worker's spare training process finishes importing first
        started = time.perf_counter()
        job = service.client.post("/jobs", json=spec).json()
        while (job := service.client.get(f"/jobs/{job['id']}").json())["status"] not in ("succeeded", "failed"):
            time.sleep(0.05)
        assert job["status"] == "succeeded", job
        return {"seconds": time.perf_counter() - started, "storage_wait_s": job["result"]["storage_wait_s"]}


def throughput(endpoint: str, bucket: str, mib: int) -> tuple[float, float]:
    from traindock.storage import S3Store

    os.environ.update(AWS_ENDPOINT_URL=endpoint)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "big.bin"
        path.write_bytes(os.urandom(mib << 20))
        store = S3Store(f"s3://{bucket}/bench", Path(root), retry_s=30)
        started = time.perf_counter()
        location = store.put_file(path, move=True)
        up = mib / (time.perf_counter() - started)
        started = time.perf_counter()
        store.fetch_file(location)
        return up, mib / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(one_job(options.steps)))
        return
    moto = start_moto(port := free_port())
    endpoint, bucket = f"http://127.0.0.1:{port}", f"bench-{uuid.uuid4().hex[:8]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_REGION": "us-east-1"}
    os.environ.update(aws)
    times: dict[str, list[float]] = {"local": [], "s3": []}
    waits: list[float] = []
    try:
        for round_ in range(options.rounds):
            for store in ("local", "s3"):
                env = {key: value for key, value in os.environ.items() if not key.startswith("TRAINDOCK_")}
                if store == "s3":
                    env["TRAINDOCK_STORAGE_URL"] = f"s3://{bucket}/round-{round_}"
                done = subprocess.run([sys.executable, __file__, "--child", "--steps", str(options.steps)],
                                      env=env, capture_output=True, text=True, check=True)
                measured = json.loads(done.stdout.strip().splitlines()[-1])
                times[store].append(measured["seconds"])
                if store == "s3":
                    waits.append(measured["storage_wait_s"] / measured["seconds"])
                print(f"round {round_ + 1} {store}: {measured['seconds']:.1f} s, waited for the store "
                      f"{measured['storage_wait_s']:.2f} s", flush=True)
        local, s3 = statistics.median(times["local"]), statistics.median(times["s3"])
        print(f"job wall time, median of {options.rounds}: local {local:.1f} s, s3 {s3:.1f} s, "
              f"ratio {s3 / local:.3f} (goal <= 1.05)")
        print(f"training waited for the object store: median {100 * statistics.median(waits):.1f}% of the job's "
              f"wall time (largest {100 * max(waits):.1f}%)")
        up, down = throughput(endpoint, bucket, options.mib)
        print(f"one {options.mib} MiB file: upload {up:.0f} MiB/s, download {down:.0f} MiB/s")
    finally:
        moto.terminate()


if __name__ == "__main__":
    main()
