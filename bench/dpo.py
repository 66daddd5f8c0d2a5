"""DPO through traindock against a plain TRL script (bench/bare_dpo.py) on the same job: LoRA on
the bench model, the demo dataset's instructions as prompts, each row's answer chosen and the next
row's rejected. Several rounds, interleaved, each started once the worker is quiet. Prints medians:
the training loop's seconds per step (train_runtime / steps) and the peak memory of the training
process (GPU: torch's peak allocation; CPU: the process's peak resident set), service / bare.
Goal: both ratios <= 1.05.

    python bench/dpo.py [--rounds 3] [--steps 60] [--model small]   # CPU
    python bench/dpo.py --model 0.5b --bf16 --rounds 1 --steps 30    # one GPU
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from embedded import embedded_service  # noqa: E402 (bench/, beside this script)
from overhead import wait_until_quiet  # noqa: E402


def preference_pairs() -> list[dict]:
    rows = [json.loads(line) for line in (REPO / "traindock/data/alpaca_demo.jsonl").read_text().splitlines()]
    return [{"prompt": row["instruction"], "chosen": row["output"], "rejected": rows[(i + 1) % len(rows)]["output"]}
            for i, row in enumerate(rows) if row["output"].strip() and rows[(i + 1) % len(rows)]["output"].strip()]


def job_spec(dataset_id: int, options) -> dict:
    return {
        "base_model": "bench-model", "dataset_id": dataset_id, "objective": "dpo",
        "data": {"cutoff_len": 256}, "lora": {"r": 8, "alpha": 16, "dropout": 0.05},
        "training": {"max_steps": options.steps, "per_device_train_batch_size": 4, "learning_rate": 1e-4,
                     "optim": "adamw_torch", "logging_steps": 10, "save_strategy": "no", "bf16": options.bf16},
    }


def training_process_peak_rss(job_id: int) -> int:
    """The peak resident set (VmHWM) of the job's training process while it lives, else 0."""
    title = f"traindock-train job {job_id} ".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(title):
                status = (cmdline.parent / "status").read_text()
                return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) * 1024
        except (OSError, StopIteration):
            continue
    return 0


def service_run(client, spec: dict) -> dict:
    job = client.post("/jobs", json=spec).json()
    assert "id" in job, job
    peak_rss = 0
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.2)
        peak_rss = max(peak_rss, training_process_peak_rss(job["id"]))
        job = client.get(f"/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    result = job["result"]
    return {**result["metrics"], "peak_gpu_memory_bytes": result["peak_gpu_memory_bytes"], "peak_rss_bytes": peak_rss}


def bare_run(spec: dict, pairs: Path, model_dir: Path, workdir: Path, round_: int) -> dict:
    spec_path = workdir / "bare-dpo-spec.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bare_dpo.py"), str(spec_path), str(pairs),
                           str(model_dir), str(workdir / f"bare-dpo-{round_}")], check=True, capture_output=True,
                          text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak(metrics: dict) -> int:
    return metrics["peak_gpu_memory_bytes"] or metrics["peak_rss_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--model", choices=["tiny", "small", "0.5b"], default="small")
    parser.add_argument("--bf16", action="store_true")
    options = parser.parse_args()

    with embedded_service(options.model, "traindock-bench-dpo-") as served:
        client = served.client
        pairs = served.workdir / "pairs.jsonl"
        pairs.write_text("".join(json.dumps(row) + "\n" for row in preference_pairs()))
        dataset = client.post("/datasets", files={"file": ("pairs.jsonl", pairs.read_bytes())}).json()
        assert dataset.get("format") == "preference", dataset
        spec = job_spec(dataset["id"], options)
        model_dir = served.workdir / "models" / "bench-model"
        service_run(client, spec)  # warm-up: file caches, first imports
        bare, service = [], []
        for round_ in range(options.rounds):
            wait_until_quiet(served.worker_pid)
            bare.append(bare_run(spec, pairs, model_dir, served.workdir, round_))
            wait_until_quiet(served.worker_pid)
            service.append(service_run(client, spec))
            print(f"round {round_ + 1}: s/step bare {bare[-1]['train_runtime'] / options.steps:.4f}, service "
                  f"{service[-1]['train_runtime'] / options.steps:.4f}; peak memory bare {peak(bare[-1]) / 2**20:.0f} "
                  f"MiB, service {peak(service[-1]) / 2**20:.0f} MiB", flush=True)
    runs = {"bare": bare, "service": service}
    step = {name: statistics.median(m["train_runtime"] / options.steps for m in done) for name, done in runs.items()}
    # On a shared machine the least disturbed round says most about the code itself.
    fastest = {name: min(m["train_runtime"] / options.steps for m in done) for name, done in runs.items()}
    memory = {name: statistics.median(peak(m) for m in done) for name, done in runs.items()}
    what = "GPU peak allocation" if bare[-1]["peak_gpu_memory_bytes"] else "peak resident set of the process"
    print(f"seconds per step, medians: bare {step['bare']:.4f}, service {step['service']:.4f}, ratio "
          f"{step['service'] / step['bare']:.3f}; fastest rounds: bare {fastest['bare']:.4f}, service "
          f"{fastest['service']:.4f}, ratio {fastest['service'] / fastest['bare']:.3f} (goal <= 1.05)")
    print(f"peak memory ({what}), medians: bare {memory['bare'] / 2**20:.0f} MiB, service "
          f"{memory['service'] / 2**20:.0f} MiB, ratio {memory['service'] / memory['bare']:.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()
