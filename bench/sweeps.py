"""ASHA against the full grid: the same 9-trial learning-rate sweep on the tiny model (embedded:
SQLite, one worker), once to the end and once with ASHA. Prints each sweep's trials, total optimizer
steps, wall time and best trial, then the ratio of steps (goal <= 50%) and whether the best is
the same (goal: yes).

    python bench/sweeps.py [--max-steps 27] [--grace 3] [--factor 3]
"""

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from embedded import embedded_service  # noqa: E402

# Log-spaced, in an order that does not sort them: ASHA sees the trials in the order they report.
LRS = [1e-3, 1e-1, 1e-4, 3e-2, 3e-4, 1.0, 1e-2, 3e-3, 3e-1]


def run_sweep(client, dataset_id: int, max_steps: int, early_stopping: dict | None) -> tuple[dict, float, int]:
    request = {
        "name": "asha" if early_stopping else "grid", "method": "grid", "max_concurrent_trials": 1,
        "parameters": {"training.learning_rate": {"values": LRS}}, "metric": {"name": "loss"},
        "base": {"base_model": "bench-model", "dataset_id": dataset_id, "data": {"cutoff_len": 64},
                 "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                 "training": {"max_steps": max_steps, "per_device_train_batch_size": 4, "optim": "adamw_torch",
                              "logging_steps": 1, "save_strategy": "no", "lr_scheduler_type": "constant"}},
        **({"early_stopping": early_stopping} if early_stopping else {}),
    }
    started = time.monotonic()
    sweep = client.post("/sweeps", json=request).json()
    while sweep["status"] == "running":
        time.sleep(0.5)
        sweep = client.get(f"/sweeps/{sweep['id']}").json()
    wall = time.monotonic() - started
    steps = sum(client.get(f"/jobs/{t['job_id']}").json()["progress"]["step"] for t in sweep["trials"])
    return sweep, wall, steps


def show(label: str, sweep: dict, wall: float, steps: int) -> None:
    print(f"{label}: {sweep['status']}, {steps} optimizer steps, {wall:.1f} s wall")
    for t in sweep["trials"]:
        print(f"  trial {t['trial']}: lr {t['params']['training.learning_rate']:g} {t['status']:>13} "
              f"loss {t['metric']:.4f} at step {t['metric_step']}")
    best = sweep["best"]
    print(f"  best: trial {best['trial']} lr {best['params']['training.learning_rate']:g} loss {best['value']:.4f}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=27)
    parser.add_argument("--grace", type=int, default=3)
    parser.add_argument("--factor", type=int, default=3)
    options = parser.parse_args()
    with embedded_service("tiny", "traindock-sweeps-") as served:
        client, dataset_id = served.client, served.dataset["id"]
        grid = run_sweep(client, dataset_id, options.max_steps, None)
        show("full grid", *grid)
        asha = run_sweep(client, dataset_id, options.max_steps,
                         {"grace_steps": options.grace, "reduction_factor": options.factor})
        show("asha", *asha)
    same = asha[0]["best"]["params"] == grid[0]["best"]["params"]
    print(f"asha / grid: steps {asha[2]}/{grid[2]} = {asha[2] / grid[2]:.0%} (goal <= 50%), "
          f"wall {asha[1]:.0f}/{grid[1]:.0f} s = {asha[1] / grid[1]:.0%}; same best trial: {same} "
          f"({datetime.now().isoformat(timespec='seconds')})")


if __name__ == "__main__":
    main()
