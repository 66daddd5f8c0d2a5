"""What GPUs this machine gives a training process, as torch.cuda sees them. Run as
`python -m worker.gpus` by the worker (worker/registry.py): the Celery process itself never
touches CUDA, whose context would hold memory on every GPU for the worker's whole life."""

import json


def visible_gpus() -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        major, minor = properties.major, properties.minor
        gpus.append({"index": index, "name": properties.name, "memory_bytes": properties.total_memory,
                     "compute_capability": f"{major}.{minor}", "bf16": major >= 8})  # Ampere and newer
    return gpus


if __name__ == "__main__":
    print(json.dumps(visible_gpus()))
