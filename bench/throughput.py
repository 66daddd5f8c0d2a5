"""Throughput of padded, length-grouped and packed batches: the same job (one epoch of a
length-skewed text dataset, lengths from 10 tokens to cutoff_len, most of them short) through the
service (embedded backend, a real worker), each variant several times, interleaved. Prints the
median real (non-padding) tokens/s and padding efficiency (real / processed tokens) of each.
Goals: packed efficiency >= 0.95 and packed real tokens/s >= 1.5 x padded.

    python bench/throughput.py [--rounds 2] [--rows 300] [--cutoff-len 256]   # tiny model, CPU

real tokens/s is measured from the end of each run's first step (start-up and tokenization do not
count).
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for bench.overhead and tests.e2e.conftest

from bench.overhead import service_run  # noqa: E402

VARIANTS = {"padded": {}, "grouped": {"group_by_length": True}, "packed": {"packing": True}}
WORDS = ["the", "a", "word", "model", "data", "train", "token", "batch"]  # one token each


def skewed_rows(rows: int, cutoff_len: int, seed: int = 0) -> bytes:
    """Token lengths log-uniform from 10 to cutoff_len (bos and eos included): many short rows,
    a few long ones, as in instruction data."""
    rng = random.Random(seed)
    lines = []
    for _ in range(rows):
        tokens = int(10 * (cutoff_len / 10) ** rng.random())
        lines.append(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(tokens - 2))}))
    return ("\n".join(lines) + "\n").encode()


def job_spec(dataset_id: int, data: dict, options) -> dict:
    return {
        "base_model": "bench-model", "dataset_id": dataset_id,
        "data": {"cutoff_len": options.cutoff_len, "val_set_size": 0, **data},
        "training": {"num_train_epochs": 1, "per_device_train_batch_size": 8, "learning_rate": 1e-4,
                     "optim": "adamw_torch", "logging_steps": 10, "save_strategy": "no"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--cutoff-len", type=int, default=256)
    options = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="traindock-bench-"))
    os.environ.update(TRAINDOCK_DATA_DIR=str(workdir / "data"),
                      TRAINDOCK_MODEL_ROOTS=json.dumps([str(workdir / "models")]))
    from fastapi.testclient import TestClient

    from api.app import create_app
    from db.engine import session_scope
    from db.tenants import issue_key
    from tests.e2e.conftest import start_worker, stop_worker
    from traindock.cli import migrate
    from worker.tinymodel import build_tiny_model

    build_tiny_model(workdir / "models" / "bench-model")
    migrate()
    worker = start_worker(workdir / "worker.log")
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    try:
        with session_scope() as session:
            key = issue_key(session, "bench").secret
        with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as client:
            data = skewed_rows(options.rows, options.cutoff_len)
            dataset = client.post("/datasets", files={"file": ("skewed.jsonl", data)}).json()
            for round_ in range(options.rounds):
                for name, variant in VARIANTS.items():
                    _, job = service_run(client, job_spec(dataset["id"], variant, options))
                    results[name].append(job["result"])
                    print(f"round {round_ + 1} {name}: {job['result']['real_tokens_per_second']:.0f} real tokens/s, "
                          f"efficiency {job['result']['padding_efficiency']:.3f}, "
                          f"{job['result']['global_step']} steps", flush=True)
    finally:
        stop_worker(worker)

    median = {name: statistics.median(r["real_tokens_per_second"] for r in runs) for name, runs in results.items()}
    print(f"{options.rows} rows, cutoff_len {options.cutoff_len}, batch 8, one epoch, tiny model, "
          f"{os.cpu_count()} CPUs; medians of {options.rounds} rounds")
    for name, runs in results.items():
        print(f"{name:8} real tokens/s {median[name]:8.0f}  ({median[name] / median['padded']:.2f} x padded)  "
              f"padding efficiency {runs[-1]['padding_efficiency']:.3f}")
    print(f"goals: packed efficiency >= 0.95: {results['packed'][-1]['padding_efficiency']:.3f}; "
          f"packed real tokens/s >= 1.5 x padded: {median['packed'] / median['padded']:.2f} x")


if __name__ == "__main__":
    main()
