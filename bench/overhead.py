"""Overhead of traindock: the same tiny LoRA job as a bare Trainer script and through the service
(embedded backend, a real worker), several times, interleaved. Prints the medians and ratios.
Goals: service / bare <= 1.05, and the reporting callback <= 1% of a training step.

    python bench/overhead.py [--rounds 5] [--steps 300]
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


def job_spec(dataset_id: int, steps: int) -> dict:
    return {
        "base_model": "tiny", "dataset_id": dataset_id,
        "data": {"cutoff_len": 128, "val_set_size": 0},
        "training": {"max_steps": steps, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                     "optim": "adamw_torch", "logging_steps": 10, "save_strategy": "no"},
    }


def bare_run(spec: dict, dataset: dict, workdir: Path, round_: int) -> float:
    spec_path = workdir / "bare-spec.json"
    spec_path.write_text(json.dumps(spec))
    started = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "bench" / "bare_trainer.py"), str(spec_path), dataset["path"],
                    dataset["format"], str(workdir / f"bare-{round_}")], check=True, capture_output=True)
    return time.perf_counter() - started


def service_run(client, spec: dict) -> float:
    """From the worker's claim (it starts the training process) to the job's end."""
    job = client.post("/jobs", json=spec).json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.05)
        job = client.get(f"/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job
    attempt = job["attempts"][-1]
    return (datetime.fromisoformat(attempt["finished_at"]) - datetime.fromisoformat(attempt["started_at"])).total_seconds()


def callback_cost_per_step(job_id: int, run_id: int, calls: int = 2000) -> float:
    """Seconds the reporting callback adds per training step, measured on the real database with
    a log line every 10 steps, as in the benchmark job."""
    import threading

    from transformers import TrainerControl, TrainerState, TrainingArguments

    from worker.callback import ReportingCallback

    callback = ReportingCallback(job_id, run_id, attempt=1, stop=threading.Event())
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none")
    state, control = TrainerState(max_steps=calls), TrainerControl()
    started = time.perf_counter()
    for step in range(1, calls + 1):
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
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="traindock-bench-"))
    os.environ.update(TRAINDOCK_DATA_DIR=str(workdir / "data"),
                      TRAINDOCK_MODEL_ROOTS=json.dumps([str(workdir / "models")]))
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.e2e.conftest import start_worker, stop_worker
    from traindock.cli import migrate
    from worker.tinymodel import build_tiny_model

    build_tiny_model(workdir / "models" / "tiny")
    migrate()
    worker = start_worker(workdir / "worker.log")
    try:
        with TestClient(create_app()) as client:
            demo = (REPO / "traindock" / "data" / "alpaca_demo.jsonl").read_bytes()
            dataset = client.post("/datasets", files={"file": ("demo.jsonl", demo)}).json()
            from db.datasets import get_dataset
            from db.engine import session_scope

            with session_scope() as session:
                dataset["path"] = get_dataset(session, dataset["id"]).path
            spec = job_spec(dataset["id"], options.steps)
            service_run(client, spec)  # warm-up: file caches, first imports
            bare, service = [], []
            for round_ in range(options.rounds):
                bare.append(bare_run(spec, dataset, workdir, round_))
                service.append(service_run(client, spec))
                print(f"round {round_ + 1}: bare {bare[-1]:.2f} s, service {service[-1]:.2f} s", flush=True)
            last = client.get("/jobs", params={"limit": 1}).json()["items"][0]
            step_s = last["result"]["metrics"]["train_runtime"] / options.steps
    finally:
        stop_worker(worker)
    from db.engine import session_scope
    from db.runs import latest_run

    with session_scope() as session:
        run_id = latest_run(session, last["id"]).id
    per_step = callback_cost_per_step(last["id"], run_id)
    ratio = statistics.median(service) / statistics.median(bare)
    print(f"median bare {statistics.median(bare):.2f} s, median service {statistics.median(service):.2f} s")
    print(f"service/bare ratio: {ratio:.3f} (goal <= 1.05)")
    print(f"callback per step: {per_step * 1e6:.0f} us of a {step_s * 1e3:.1f} ms step = "
          f"{100 * per_step / step_s:.2f}% (goal <= 1%)")


if __name__ == "__main__":
    main()
