"""Jobs on several NVIDIA GPUs through the service (embedded backend, a real worker on all GPUs):
N ranks x batch 4 against one GPU x batch 4N (LoRA, DDP over NCCL), an FSDP full fine-tune against
the same on one GPU, and a cancel + resume of the N-GPU job. Prints the largest per-step loss
differences and peak memory; exits 1 when a job fails or the losses are further apart than
--tolerance. Run by bench/gpu_check_multi.sh when the machine has more than one GPU.

    python bench/multi_gpu.py [--model 0.5b] [--steps 20]
"""

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from embedded import embedded_service  # noqa: E402

FINISHED = ("succeeded", "failed", "cancelled")


def spec(dataset_id: int, steps: int, gpus: int, batch: int, **fields) -> dict:
    return {
        "base_model": "bench-model", "dataset_id": dataset_id, "data": {"cutoff_len": 256, "val_set_size": 0},
        "training": {"max_steps": steps, "per_device_train_batch_size": batch, "learning_rate": 1e-4,
                     "optim": "adamw_torch", "logging_steps": 1, "save_steps": 5, "save_total_limit": 2},
        "resources": {"gpus": gpus, **fields.pop("resources", {})}, **fields,
    }


def run(client, body: dict, until=FINISHED) -> dict:
    job = client.post("/jobs", json=body).json()
    while job["status"] not in until:
        time.sleep(0.5)
        job = client.get(f"/jobs/{job['id']}").json()
    return job


def losses(client, job_id: int) -> dict[int, float]:
    page = client.get(f"/jobs/{job_id}/metrics", params={"name": "loss", "limit": 1000}).json()
    return {p["step"]: p["value"] for p in page["items"]}


def compare(client, name: str, one: dict, many: dict, tolerance: float) -> bool:
    ok = one["status"] == many["status"] == "succeeded"
    if ok:
        a, b = losses(client, one["id"]), losses(client, many["id"])
        gap = max(abs(a[s] - b[s]) for s in a) if a.keys() == b.keys() else float("inf")
        ok = gap <= tolerance
        peak = (many["result"].get("peak_gpu_memory_bytes") or 0) / 2**30
        print(f"{name}: largest per-step loss difference {gap:.2e} (tolerance {tolerance:g}); "
              f"peak memory of rank 0 {peak:.2f} GiB, one GPU "
              f"{(one['result'].get('peak_gpu_memory_bytes') or 0) / 2**30:.2f} GiB", flush=True)
    else:
        print(f"{name}: FAILED {one['status']} {one.get('error')} / {many['status']} {many.get('error')}", flush=True)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "0.5b"], default="0.5b")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tolerance", type=float, default=1e-3)  # NCCL and cuBLAS sum in their own order
    options = parser.parse_args()
    import torch

    gpus = torch.cuda.device_count()
    if gpus < 2:
        print(f"skipped: {gpus} GPU(s) visible")
        return 0
    ok = True
    with embedded_service(options.model, "traindock-multi-gpu-", gpus=",".join(map(str, range(gpus)))) as served:
        client, dataset = served.client, served.dataset["id"]
        steps = options.steps
        ok &= compare(client, f"LoRA, DDP on {gpus} GPUs",
                      run(client, spec(dataset, steps, 1, 4 * gpus)), run(client, spec(dataset, steps, gpus, 4)),
                      options.tolerance)
        ok &= compare(client, f"full fine-tune, FSDP on {gpus} GPUs",
                      run(client, spec(dataset, steps, 1, 4 * gpus, method="full")),
                      run(client, spec(dataset, steps, gpus, 4, method="full", resources={"strategy": "fsdp"})),
                      options.tolerance)
        reference = run(client, spec(dataset, 4 * steps, gpus, 4))
        job = run(client, spec(dataset, 4 * steps, gpus, 4), until=("running",))
        while (client.get(f"/jobs/{job['id']}").json().get("progress") or {}).get("step", 0) < steps:
            time.sleep(0.2)
        client.post(f"/jobs/{job['id']}/cancel")
        while (job := client.get(f"/jobs/{job['id']}").json())["status"] not in FINISHED:
            time.sleep(0.5)
        print(f"cancel at step {job['progress']['step']} of {4 * steps}: {job['status']}", flush=True)
        client.post(f"/jobs/{job['id']}/resume")
        while (job := client.get(f"/jobs/{job['id']}").json())["status"] not in FINISHED:
            time.sleep(0.5)
        ok &= compare(client, f"cancel + resume on {gpus} GPUs", reference, job, options.tolerance)
    print("multi-GPU check:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
