"""GPU checks through the service (embedded backend, a real worker), one line each:
- qlora: a QLoRA job (4-bit NF4 base, bf16 compute) trains and checkpoints;
- qlora resume: a job continuing from its step-5 checkpoint (resume_from_checkpoint) logs the
  same per-step losses as the uninterrupted job, bit for bit;
- memory <method>: the measured peak GPU memory (torch.cuda.max_memory_allocated) is within 15%
  of POST /jobs/validate's estimate, for LoRA, full fine-tuning and QLoRA (packed batches, so
  every micro-batch is cutoff_len long as the estimate assumes).
Exits 1 when any check fails. Part of bench/gpu_check.sh.

    python bench/gpu_checks.py [--model 0.5b] [--methods qlora,lora,full]
    python bench/gpu_checks.py --model tiny --methods lora --precision fp32  # CPU: a smoke run of this script
"""

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from embedded import embedded_service  # noqa: E402

TOLERANCE = 0.15
STEPS, RESUME_STEP = 10, 5


PRECISION = {"bf16": True}  # set from --precision: {"bf16": True}, or {} for fp32


def spec_for(dataset_id: int, method: str, **extra) -> dict:
    return {"base_model": "bench-model", "dataset_id": dataset_id, "method": method,
            "data": {"cutoff_len": 256, "packing": True},
            "training": {"max_steps": STEPS, "per_device_train_batch_size": 4, "learning_rate": 1e-4,
                         "optim": "adamw_torch", "logging_steps": 1, "save_steps": RESUME_STEP,
                         "seed": 7, **PRECISION}, **extra}


def run_job(client, spec: dict, timeout_s: float = 300) -> dict:
    response = client.post("/jobs", json=spec)
    assert response.status_code == 201, response.text
    job, deadline = response.json(), time.monotonic() + timeout_s
    while job["status"] not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = client.get(f"/jobs/{job['id']}").json()
    return job


def losses(client, job_id: int) -> dict[int, float]:
    page = client.get(f"/jobs/{job_id}/metrics", params={"name": "loss", "limit": 500}).json()
    return {point["step"]: point["value"] for point in page["items"]}


def report(name: str, ok: bool, detail: str) -> bool:
    print(f"check {name}: {'ok' if ok else 'FAIL'} {detail}", flush=True)
    return ok


def check_training_and_resume(client, dataset_id: int, method: str) -> list[bool]:
    job = run_job(client, spec_for(dataset_id, method))
    steps = [c["step"] for c in client.get(f"/jobs/{job['id']}/checkpoints").json()]
    trained = report(method, job["status"] == "succeeded" and RESUME_STEP in steps,
                     f"status {job['status']}, checkpoints {sorted(steps)}, error {job.get('error')}")
    if not trained:
        return [trained]
    resumed = run_job(client, spec_for(dataset_id, method, resume_from_checkpoint={"job_id": job["id"], "step": RESUME_STEP}))
    first, second = losses(client, job["id"]), losses(client, resumed["id"])
    later = [step for step in first if step > RESUME_STEP]
    same = resumed["status"] == "succeeded" and later and all(second.get(step) == first[step] for step in later)
    diffs = [abs(second.get(step, float("nan")) - first[step]) for step in later]
    return [trained, report(f"{method} resume", bool(same), f"steps {later[0] if later else '?'}-{STEPS} "
                            f"max |loss difference| {max(diffs, default=float('nan')):.3g} (goal 0)")]


def check_memory(client, dataset_id: int, method: str) -> bool:
    spec = spec_for(dataset_id, method)
    spec["training"].update(save_strategy="no", max_steps=4)
    estimate = client.post("/jobs/validate", json=spec).json()["estimates"]["memory"]
    job = run_job(client, spec)
    result = job.get("result") or {}
    measured, error = result.get("peak_gpu_memory_bytes"), result.get("memory_estimate_error")
    if job["status"] != "succeeded" or measured is None or error is None:
        return report(f"memory {method}", False, f"status {job['status']}, measured {measured}, "
                      f"estimate {estimate.get('bytes', estimate)}, error {job.get('error')}")
    return report(f"memory {method}", abs(error) <= TOLERANCE,
                  f"measured {measured / 2**30:.2f} GiB, estimate {result['memory_estimate_bytes'] / 2**30:.2f} GiB "
                  f"(validate: {estimate['peak_gib']} GiB), error {error:+.1%} (goal within {TOLERANCE:.0%})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "0.5b"], default="0.5b")
    parser.add_argument("--methods", default="qlora,lora,full",
                        help="Memory checks to run; the first also trains, checkpoints and resumes.")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    options = parser.parse_args()
    if options.precision == "fp32":
        PRECISION.clear()
    methods = options.methods.split(",")

    results = []
    with embedded_service(options.model, "traindock-gpu-checks-") as served:
        client, dataset_id = served.client, served.dataset["id"]
        results += check_training_and_resume(client, dataset_id, methods[0])
        for method in methods:
            results.append(check_memory(client, dataset_id, method))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
