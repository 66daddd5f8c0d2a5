"""The attempt's measured peak GPU memory beside the estimate POST /jobs/validate gave for it
(jobspec/memory.py, from the same config.json), so the estimate's error shows in every result."""

import json

import torch

from jobspec import JobSpec, memory_estimate
from traindock.paths import PathRefused, resolve_base_model
from traindock.settings import get_settings


def estimated_bytes(spec: JobSpec) -> int | None:
    """None for a hub id or a model the estimate does not know."""
    try:
        folder = resolve_base_model(spec.base_model, get_settings().effective_model_roots)
        config = json.loads((folder / "config.json").read_text()) if folder is not None else None
    except (PathRefused, OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    return memory_estimate(config, spec).get("bytes", {}).get("total")


def measured_against_estimate(spec: JobSpec) -> dict:
    """peak_gpu_memory_bytes (torch's peak allocation; None on CPU), memory_estimate_bytes and
    memory_estimate_error: (estimate - measured) / measured, positive when the estimate is above."""
    measured = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    estimate = estimated_bytes(spec)
    error = round((estimate - measured) / measured, 4) if measured and estimate is not None else None
    return {"peak_gpu_memory_bytes": measured, "memory_estimate_bytes": estimate, "memory_estimate_error": error}
