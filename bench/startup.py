"""Start-up of a job on a warm (idle) worker: from the submit to the end of the first optimizer step,
split into dispatch (submit -> the worker's claim), process start (claim -> the training
process runs), imports, data preparation (tokenizer and tokenized examples), model load (with
LoRA or QLoRA applied), trainer set-up and the first step, read from the job's record (the
attempt's `started_at`, the result's `startup`). Prints each round, the medians and the goal ratio
submit -> first step / (model load + 1 s), goal <= 1.5.

    python bench/startup.py [--rounds 3]                        # tiny model, CPU
    python bench/startup.py --model 0.5b --bf16 --rounds 2       # one GPU (gpu_check.sh)
"""

import argparse
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # tests.e2e.conftest's worker start-up, bench/embedded.py

from embedded import embedded_service  # noqa: E402

PARTS = ("dispatch", "process_start", "imports", "data", "model", "trainer", "first_step")


def split_of(job: dict) -> dict[str, float]:
    """Seconds per part, from the job as GET /jobs/{id} answers it."""
    startup, attempt = job["result"]["startup"], job["attempts"][-1]
    submitted, claimed = datetime.fromisoformat(job["created_at"]), datetime.fromisoformat(attempt["started_at"])
    process = datetime.fromisoformat(startup["process_started_at"])
    split = {"dispatch": (claimed - submitted).total_seconds(), "process_start": (process - claimed).total_seconds()}
    split.update({part: startup[f"{part}_s"] for part in PARTS[2:]})
    split["total"] = sum(split[part] for part in PARTS)
    split["ratio"] = split["total"] / (split["model"] + 1)
    return split


def run_job(client, spec: dict) -> dict:
    job = client.post("/jobs", json=spec).json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.2)
        job = client.get(f"/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", choices=["tiny", "0.5b"], default="tiny")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--method", choices=["lora", "qlora", "full"], default="lora")
    parser.add_argument("--idle", type=float, default=8.0,
                        help="seconds the worker waits before each submit: a warm worker is an idle one, whose "
                        "spare training process (worker/warm.py) has done its imports; 0: jobs back to back")
    options = parser.parse_args()

    splits = []
    with embedded_service(options.model, "traindock-startup-") as served:
        client = served.client
        spec = {"base_model": "bench-model", "dataset_id": served.dataset["id"], "method": options.method,
                "data": {"cutoff_len": 256},
                "training": {"max_steps": 2, "per_device_train_batch_size": 8, "save_strategy": "no",
                             "bf16": options.bf16, "fp16": options.method == "qlora" and not options.bf16}}
        run_job(client, spec)  # warm-up: the worker's first job, file caches, the token cache
        for round_ in range(options.rounds):
            time.sleep(options.idle)
            splits.append(split_of(run_job(client, spec)))
            print(f"round {round_ + 1}: " + ", ".join(f"{part} {splits[-1][part]:.2f} s" for part in PARTS)
                  + f"; submit -> first step {splits[-1]['total']:.2f} s", flush=True)
    median = {key: statistics.median(split[key] for split in splits) for key in (*PARTS, "total", "ratio")}
    print("median: " + ", ".join(f"{part} {median[part]:.2f} s" for part in PARTS))
    print(f"submit -> first step {median['total']:.2f} s; model load {median['model']:.2f} s; "
          f"ratio submit->first step / (model load + 1 s) = {median['ratio']:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
