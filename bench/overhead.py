"""Overhead of traindock: the same LoRA job as a bare Trainer script and through the service
(embedded backend, a real worker), several times, interleaved. Each run starts alone on the
machine: after the worker's processes (its spare training process importing included) have gone
quiet. Prints medians and ratios: the training loop's tokens/s (service / bare; imports and
start-up excluded on both sides) and the wall time (the bare script's imports included, the
service's paid ahead by its spare). Goals: in-loop tokens/s service / bare >= 0.98, and the
reporting callback <= 1% of a training step.

    python bench/overhead.py [--rounds 5] [--steps 300]              # tiny model, CPU
    python bench/overhead.py --model 0.5b --bf16 --rounds 1 --steps 60  # one GPU (gpu_check.sh)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]  # tests.e2e.conftest's worker start-up, bench/embedded.py

from embedded import embedded_service  # noqa: E402 (bench/, beside this script)


def job_spec(dataset_id: int, options) -> dict:
    return {
        "base_model": "bench-model", "dataset_id": dataset_id,
        "data": {"cutoff_len": 256, "val_set_size": 0},
        "training": {"max_steps": options.steps, "per_device_train_batch_size": 8, "learning_rate": 1e-4,
                     "optim": "adamw_torch", "logging_steps": 10, "save_strategy": "no", "bf16": options.bf16},
    }


def bare_run(spec: dict, dataset: dict, workdir: Path, round_: int) -> tuple[float, dict]:
    spec_path = workdir / "bare-spec.json"
    spec_path.write_text(json.dumps(spec))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bare_trainer.py"), str(spec_path),
                           dataset["path"], dataset["format"], str(workdir / f"bare-{round_}")],
                          check=True, capture_output=True, text=True)
    return time.perf_counter() - started, json.loads(done.stdout.strip().splitlines()[-1])


def cpu_seconds(root_pid: int) -> float:
    """CPU time so far of `root_pid` and every process below it (Linux /proc)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [root_pid]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack += children.get(pid, [])
    return total


def wait_until_quiet(root_pid: int, quiet_s: float = 1.0, timeout_s: float = 120) -> None:
    """Until the worker's processes use (almost) no CPU for `quiet_s`: idle, its spare imported."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_seconds(root_pid)
        time.sleep(quiet_s)
        if cpu_seconds(root_pid) - before < 0.05 * quiet_s:
            return
    print("warning: the worker did not go quiet", flush=True)


def service_run(client, spec: dict) -> tuple[float, dict]:
    """From the worker's claim (it starts the training process) to the job's end, as the run row
    records it (so how often this loop looks does not count, beyond the CPU it takes)."""
    job = client.post("/jobs", json=spec).json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.5)
        job = client.get(f"/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    attempt = job["attempts"][-1]
    seconds = (datetime.fromisoformat(attempt["finished_at"]) - datetime.fromisoformat(attempt["started_at"])).total_seconds()
    return seconds, job


def in_loop(tokens: int, metrics: dict) -> float:
    return tokens / metrics["train_runtime"]


def callback_cost_per_step(job_id: int, run_id: int, step_s: float, calls: int = 2000) -> float:
    """Seconds the reporting callback adds per training step, on the real database, with a log
    line every 10 steps as in the benchmark job. The callback's clock advances `step_s` per step,
    so its once-a-second writes happen as often as in the real run."""
    import threading
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState, TrainingArguments

    import worker.callback
    from worker.callback import ReportingCallback
    from worker.reporting import Reporter

    clock = [0.0]
    worker.callback.time = SimpleNamespace(monotonic=lambda: clock[0])
    callback = ReportingCallback(Reporter(job_id, run_id, attempt=1), stop=threading.Event())
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none")
    state, control = TrainerState(max_steps=calls), TrainerControl()
    started = time.perf_counter()
    for step in range(1, calls + 1):
        clock[0] += step_s
        state.global_step, state.epoch = step, step / 100
        callback.on_step_end(args, state, control)
        if step % 10 == 0:
            callback.on_log(args, state, control, logs={"loss": 1.0 / step, "learning_rate": 1e-3, "grad_norm": 0.5})
    callback.on_train_end(args, state, control)
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--model", choices=["tiny", "0.5b"], default="tiny")
    parser.add_argument("--bf16", action="store_true")
    options = parser.parse_args()

    with embedded_service(options.model, "traindock-bench-") as served:
        from db.datasets import get_dataset
        from db.engine import session_scope
        from db.runs import latest_run

        client, dataset = served.client, served.dataset
        with session_scope() as session:
            dataset["path"] = get_dataset(session, dataset["id"]).path
        spec = job_spec(dataset["id"], options)
        service_run(client, spec)  # warm-up: file caches, first imports
        bare, service = [], []
        for round_ in range(options.rounds):
            wait_until_quiet(served.worker_pid)
            bare.append(bare_run(spec, dataset, served.workdir, round_))
            wait_until_quiet(served.worker_pid)
            service.append(service_run(client, spec))
            ratio = in_loop(service[-1][1]["result"]["num_input_tokens_seen"], service[-1][1]["result"]["metrics"]) / \
                in_loop(bare[-1][1]["num_input_tokens_seen"], bare[-1][1])
            print(f"round {round_ + 1}: bare {bare[-1][0]:.2f} s, service {service[-1][0]:.2f} s; in-loop tokens/s "
                  f"service/bare {ratio:.3f}", flush=True)
    last_job = service[-1][1]
    with session_scope() as session:
        run_id = latest_run(session, last_job["id"]).id
    bare_s, service_s = statistics.median(b[0] for b in bare), statistics.median(s[0] for s in service)
    bare_rate = statistics.median(in_loop(b[1]["num_input_tokens_seen"], b[1]) for b in bare)
    service_rate = statistics.median(in_loop(s[1]["result"]["num_input_tokens_seen"], s[1]["result"]["metrics"])
                                     for s in service)
    print(f"in-loop tokens/s (non-padding tokens / train_runtime), medians: bare {bare_rate:.0f}, "
          f"service {service_rate:.0f}, ratio {service_rate / bare_rate:.3f} (goal >= 0.98)")
    print(f"wall time, medians: bare {bare_s:.2f} s (its imports included), service {service_s:.2f} s (claim to "
          f"end), ratio {service_s / bare_s:.3f}")
    bare_metrics, service_result = bare[-1][1], last_job["result"]
    if bare_metrics.get("peak_gpu_memory_bytes"):
        print(f"peak GPU memory: bare {bare_metrics['peak_gpu_memory_bytes'] / 2**30:.2f} GiB, "
              f"service {service_result['peak_gpu_memory_bytes'] / 2**30:.2f} GiB")
    step_s = service_result["metrics"]["train_runtime"] / options.steps
    per_step = callback_cost_per_step(last_job["id"], run_id, step_s)
    print(f"callback per step: {per_step * 1e6:.0f} us of a {step_s * 1e3:.1f} ms step = "
          f"{100 * per_step / step_s:.2f}% (goal <= 1%)")


if __name__ == "__main__":
    main()
