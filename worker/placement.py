"""Which GPUs a job gets: a worker runs one job at a time on its GPU set (`traindock worker --gpus
0,1,2,3`, else the machine's NVIDIA GPUs, or CUDA_VISIBLE_DEVICES when set), and a job of
`resources.gpus` N gets the first N of them as its CUDA_VISIBLE_DEVICES. A worker with fewer GPUs
than a job needs does not run it: the job fails with not_enough_gpus. A worker without GPUs (a CPU
machine) runs one-GPU jobs on the CPU as ever; on such a machine `--gpus 0,1` gives ids that only
count, for tests (N processes then train on the CPU with gloo)."""

import os
from pathlib import Path

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver knows


class NotEnoughGpus(Exception):
    code = "not_enough_gpus"


def parse_gpu_ids(text: str) -> list[str]:
    """'0,1,3' -> ['0', '1', '3']; GPU UUIDs (GPU-...) pass as they are. Raises ValueError."""
    ids = [part.strip() for part in text.split(",")] if text.strip() else []
    if any(not part or " " in part for part in ids):
        raise ValueError(f"GPU ids must be comma-separated, like 0,1,2,3; got {text!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"GPU ids must not repeat; got {text!r}")
    return ids


def worker_gpu_ids(configured: str | None) -> list[str]:
    if configured is not None:
        return parse_gpu_ids(configured)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return parse_gpu_ids(visible)
    try:
        return [str(i) for i in range(len(list(NVIDIA_GPUS.iterdir())))]
    except OSError:
        return []


def job_gpu_ids(worker_ids: list[str], needed: int, worker: str) -> list[str]:
    """The GPUs of a job that needs `needed`; [] for a one-GPU job on a worker without GPUs."""
    if needed == 1 and not worker_ids:
        return []
    if len(worker_ids) < needed:
        have = f"{len(worker_ids)} ({','.join(worker_ids)})" if worker_ids else "none"
        raise NotEnoughGpus(f"the job needs {needed} GPUs (resources.gpus) and worker {worker} has {have}: "
                            f"start a worker with at least {needed}, e.g. traindock worker --gpus "
                            f"{','.join(map(str, range(needed)))}, on the job's queue, then resume the job")
    return worker_ids[:needed]
