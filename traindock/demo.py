"""`traindock demo`: a tiny local model trained end to end through the API, no hub needed."""

import json
import socket
import subprocess
import sys
import time
from importlib import resources

import httpx

from traindock.client import FINISHED, _check, api, watch_job
from traindock.settings import get_settings

DEMO_MODEL = "tiny-llama-demo"


def demo_spec(dataset_id: int) -> dict:
    return {
        "name": "demo: tiny llama LoRA",
        "base_model": DEMO_MODEL,
        "dataset_id": dataset_id,
        "data": {"cutoff_len": 128, "val_set_size": 0.1, "train_on_inputs": False},
        "method": "lora",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "training": {
            "num_train_epochs": 2, "per_device_train_batch_size": 8, "learning_rate": 3e-3,
            "optimizer": "adamw_torch", "lr_scheduler": "cosine", "warmup_ratio": 0.1,
            "logging_steps": 2, "evaluation_strategy": "steps", "eval_steps": 10,
            "save_steps": 10, "save_total_limit": 2, "load_best_model_at_end": True,
            "metric_for_best_model": "loss",
        },
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_stack() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    stack = subprocess.Popen(
        [sys.executable, "-m", "traindock.cli", "up", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            sys.exit("the API did not start (run `traindock up` to see why)")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return stack, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stack.terminate()
    sys.exit("the API did not answer within 60 s")


def run(args) -> None:
    from worker.tinymodel import build_tiny_model

    settings = get_settings()
    settings.ensure_dirs()
    model_dir = settings.effective_model_roots[0] / DEMO_MODEL
    if not (model_dir / "config.json").exists():
        print(f"building a tiny Llama and tokenizer in {model_dir}")
        build_tiny_model(model_dir)
    stack, url = (None, args.url) if args.url else _start_stack()
    try:
        with api(url) as client:
            data = resources.files("traindock").joinpath("data/alpaca_demo.jsonl").read_bytes()
            dataset = _check(client.post("/datasets", files={"file": ("alpaca_demo.jsonl", data)}))
            print(f"uploaded dataset {dataset['id']}: {dataset['rows']} {dataset['format']} rows")
            job = _check(client.post("/jobs", json=demo_spec(dataset["id"])))
            print(f"submitted job {job['id']}")
            job = watch_job(client, job["id"], interval=0.2)
            _report(client, job)
    finally:
        if stack is not None:
            stack.terminate()
            stack.wait(timeout=30)
    if job["status"] != "succeeded":
        sys.exit(1)


def _report(client: httpx.Client, job: dict) -> None:
    if job["status"] in FINISHED - {"succeeded"}:
        print(f"job {job['status']}: {json.dumps(job.get('error'))}")
        return
    points = _check(client.get(f"/jobs/{job['id']}/metrics", params={"name": ["loss", "eval_loss"], "limit": 500}))
    print("step  metric      value")
    for point in points["items"]:
        print(f"{point['step']:>4}  {point['name']:<10}  {point['value']:.4f}")
    print("checkpoints:")
    for checkpoint in _check(client.get(f"/jobs/{job['id']}/checkpoints")):
        flags = " ".join(flag for flag in ("best" if checkpoint["is_best"] else "", "deleted" if checkpoint["deleted"] else "") if flag)
        print(f"  step {checkpoint['step']:>4}  {checkpoint['path']}  {flags}")
    print(f"final model: {(job.get('result') or {}).get('final_model_path')}")
