"""`traindock demo`: a tiny local model trained end to end through the API, no hub needed."""

import socket
import subprocess
import sys
import time
from importlib import resources
from typing import Annotated

import httpx
import typer

from traindock.cli.client import CliError, api, check
from traindock.cli.commands import Url, end_of, watch_job
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
            raise CliError("the API did not start (run `traindock up` to see why)")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return stack, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stack.terminate()
    raise CliError("the API did not answer within 60 s")


def run(url: Url = None,
        keep: Annotated[bool, typer.Option("--keep", help="Leave the API and worker running afterwards.")] = False):
    """Train a tiny local model end to end through the API (no hub needed)."""
    from worker.tinymodel import build_tiny_model

    settings = get_settings()
    settings.ensure_dirs()
    model_dir = settings.effective_model_roots[0] / DEMO_MODEL
    if not (model_dir / "config.json").exists():
        print(f"building a tiny Llama and tokenizer in {model_dir}")
        build_tiny_model(model_dir)
    stack, url = (None, url) if url else _start_stack()
    try:
        with api(url) as client:
            data = resources.files("traindock").joinpath("data/alpaca_demo.jsonl").read_bytes()
            dataset = check(client.post("/datasets", files={"file": ("alpaca_demo.jsonl", data)}))
            print(f"uploaded dataset {dataset['id']}: {dataset['rows']} {dataset['format']} rows")
            job = check(client.post("/jobs", json=demo_spec(dataset["id"])))
            print(f"submitted job {job['id']}")
            job = watch_job(client, job["id"])
            if job["status"] == "succeeded":
                report(client, job, model_dir)
    finally:
        if stack is not None and not keep:
            stack.terminate()
            stack.wait(timeout=30)
        elif stack is not None:
            print(f"the API and its worker keep running at {url}; stop them with: kill {stack.pid}")
    end_of(job)


def report(client: httpx.Client, job: dict, model_dir) -> None:
    """What the run achieved, where the adapter is and how to load it."""
    result = job.get("result") or {}
    metrics = result.get("metrics") or {}
    points = check(client.get(f"/jobs/{job['id']}/metrics", params={"name": "eval_loss", "limit": 500}))["items"]
    runtime = metrics.get("train_runtime") or result.get("runtime_s")
    tokens = result.get("num_input_tokens_seen")
    print("checkpoints:")
    for checkpoint in check(client.get(f"/jobs/{job['id']}/checkpoints")):
        flags = " ".join(f for f in ("best" if checkpoint["is_best"] else "", "deleted" if checkpoint["deleted"] else "") if f)
        print(f"  step {checkpoint['step']:>4}  {checkpoint['path']}  {flags}")
    summary = {
        "best eval loss": min((p["value"] for p in points), default=None),
        "train loss": metrics.get("train_loss"),
        "runtime": f"{runtime:.1f} s" if runtime else None,
        "tokens/s": f"{tokens / runtime:.0f}" if tokens and runtime else None,
    }
    print("  ".join(f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}"
                    for name, value in summary.items() if value is not None))
    model = f"ft:{job['spec']['base_model']}:traindock:ftjob-{job['id']}"  # its /v1 name
    ask = {"model": model, "max_tokens": 32, "temperature": 0,
           "messages": [{"role": "user", "content": "Give three tips for staying healthy."}]}
    answered = client.post("/v1/chat/completions", json=ask, timeout=120)
    if answered.is_success:
        text = answered.json()["choices"][0]["message"]["content"]
        print(f"the fine-tuned model answers: {text!r}" if text.strip() else
              "the fine-tuned model answers with an empty text (a tiny model trained for seconds knows little)")
        print(f"talk to it: traindock chat {model}")
    else:  # an API whose inference server is not running (yet)
        print(f"the fine-tuned model could not answer yet ({answered.json().get('error', {}).get('message')})")
    final = _local_folder(job, result.get("final_model_path"))
    if final is None:  # an API on another machine: answers name folders, never server paths
        print(f"adapter: download it from {client.base_url}jobs/{job['id']}/artifacts/final (a tar)")
        return
    print(f"adapter: {final}\nload it with:")
    print("    from transformers import AutoModelForCausalLM\n    from peft import PeftModel\n"
          f"    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(model_dir)!r}), {final!r})")


def _local_folder(job: dict, name: str | None) -> str | None:
    """The job's `name` folder (e.g. "final") under this machine's data dir, when the API shares it."""
    output = (job.get("spec") or {}).get("output_dir")
    found = sorted(get_settings().jobs_dir.glob(f"tenant-*/{output}/{name}")) if output and name else []
    return str(found[0]) if found else None
