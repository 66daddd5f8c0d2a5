"""The memory estimate of POST /jobs/validate: the base model's config.json read as plain JSON (the
API never imports torch or transformers), then jobspec.memory; compared with the smallest GPU of
the queue's live workers when the spec names no resources.gpu_memory_gb."""

import json

from db.models import Worker
from jobspec import JobSpec, memory_estimate
from traindock.paths import PathRefused, resolve_base_model
from traindock.settings import Settings

MAX_CONFIG_BYTES = 1 << 20


def smallest_live_gpu(workers: list[Worker], queue: str) -> tuple[float, str] | None:
    """(GB, description) of the smallest GPU among `workers`, where the job may land."""
    gpus = [gpu for worker in workers for gpu in worker.gpus]
    if not gpus:
        return None
    gpu = min(gpus, key=lambda g: g["memory_bytes"])
    return round(gpu["memory_bytes"] / 1e9, 1), f"the smallest live GPU of queue '{queue}' ({gpu['name']})"


def model_memory_estimate(spec: JobSpec, settings: Settings, gpu: tuple[float, str] | None = None) -> dict:
    try:
        folder = resolve_base_model(spec.base_model, settings.effective_model_roots)
    except PathRefused:
        return {"unavailable": "base_model is refused (see errors)"}
    if folder is None:
        return {"unavailable": "base_model is a hub id: the estimate reads config.json only from a folder "
                               "in the server's model roots"}
    path = folder / "config.json"
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return {"unavailable": f"{path.name} is larger than {MAX_CONFIG_BYTES} bytes"}
        config = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return {"unavailable": f"the base model's config.json cannot be read: {exc}"}
    if not isinstance(config, dict):
        return {"unavailable": "the base model's config.json is not a JSON object"}
    return memory_estimate(config, spec, gpu)
