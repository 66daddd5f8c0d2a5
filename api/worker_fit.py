"""Whether a spec fits the live workers of its queue (db/workers.py): report_to integrations,
bf16, fp16, QLoRA and the number of GPUs against what the workers registered.

The rule: when the queue has live workers and none of them can run what the spec asks, it is a
problem (422 naming the field); when only some can, a warning (the job may land on one that
cannot). A queue without a live worker is a warning, never a refusal: jobs may be submitted
before their workers start, and the worker itself then reports what it cannot do."""

from typing import Any

from sqlalchemy.orm import Session

from api.errors import problem
from db.models import Worker
from db.workers import live_workers
from jobspec import JobSpec
from jobspec.rules import report_to_list
from traindock.settings import Settings


def _warning(field: str, msg: str) -> dict[str, str]:
    return {"field": field, "level": "warning", "msg": msg}


def _gpu_names(workers: list[Worker]) -> str:
    names = sorted({gpu["name"] for worker in workers for gpu in worker.gpus})
    return ", ".join(names) if names else "none, CPU only"


def queue_of(spec: JobSpec, settings: Settings) -> str:
    return spec.resources.queue or settings.default_queue


def worker_fit(session: Session, settings: Settings, spec: JobSpec) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(problems, warnings); problems as (loc, msg, type) dicts without the 'body' prefix."""
    queue = queue_of(spec, settings)
    # Inference servers (worker/serve.py) register too, but never train.
    workers = [worker for worker in live_workers(session, settings.heartbeat_timeout_s, queue)
               if worker.inference_url is None]
    if not workers:
        warnings = [_warning("resources.queue", f"no live worker on queue '{queue}': the job waits for one; "
                             "report_to, bf16 and method are checked against the workers only once one runs")]
        if spec.method == "qlora":
            warnings.append(_warning("method", f"method 'qlora' needs a worker with a CUDA GPU and bitsandbytes; "
                                     f"none is live on queue '{queue}' now"))
        return [], warnings
    problems: list[dict[str, Any]] = []
    warnings: list[dict[str, str]] = []
    for check in (_report_to_fit, _precision_fit, _qlora_fit, _gpu_count_fit):
        found, warned = check(spec, queue, workers)
        problems += found
        warnings += warned
    return problems, warnings


def _split(workers: list[Worker], can) -> tuple[list[Worker], list[Worker]]:
    able = [worker for worker in workers if can(worker)]
    return able, [worker for worker in workers if not can(worker)]


def _report_to_fit(spec: JobSpec, queue: str, workers: list[Worker]):
    problems, warnings = [], []
    for name in report_to_list(spec.training):
        if name in ("all", "none"):
            continue
        able, unable = _split(workers, lambda worker: name in worker.integrations)
        installed = sorted({integration for worker in workers for integration in worker.integrations})
        if not able:
            problems.append(problem(("training", "report_to"), f"no live worker of queue '{queue}' can report to "
                                    f"'{name}' (its package is not installed); their integrations: "
                                    f"{', '.join(installed) or 'none'}", "integration_unavailable"))
        elif unable:
            warnings.append(_warning("training.report_to", f"'{name}' is installed on {len(able)} of the "
                                     f"{len(workers)} live workers of queue '{queue}'; on the others the job fails"))
    return problems, warnings


def _precision_fit(spec: JobSpec, queue: str, workers: list[Worker]):
    t = spec.training
    if t.bf16:
        able, unable = _split(workers, lambda worker: any(gpu["bf16"] for gpu in worker.gpus))
        if not able:
            return [problem(("training", "bf16"), f"no live worker of queue '{queue}' has a GPU with bf16 (their "
                            f"GPUs: {_gpu_names(workers)}), so the job would fail with bf16_unsupported: set bf16 "
                            "to false (fp16 on an older GPU)", "bf16_unavailable")], []
        if unable:
            return [], [_warning("training.bf16", f"{len(unable)} of the {len(workers)} live workers of queue "
                                 f"'{queue}' have no GPU with bf16; a job that lands there fails with bf16_unsupported")]
    if t.fp16 and not any(worker.gpus for worker in workers):
        # accelerate turns fp16 autocast on only on a GPU: on a CPU the Trainer runs fp32.
        return [], [_warning("training.fp16", f"the live workers of queue '{queue}' have no GPU, where fp16 "
                             "does nothing: the job trains in fp32")]
    return [], []


def _qlora_fit(spec: JobSpec, queue: str, workers: list[Worker]):
    if spec.method != "qlora":
        return [], []
    able, unable = _split(workers, lambda worker: bool(worker.gpus) and worker.versions.get("bitsandbytes"))
    if not able:
        with_gpu = [worker for worker in workers if worker.gpus]
        why = ("none has bitsandbytes installed (pip install 'traindock[gpu]')" if with_gpu
               else "none has a CUDA GPU: they are CPU only")
        return [problem(("method",), f"method 'qlora' loads the base model in 4 bits on a CUDA GPU with "
                        f"bitsandbytes, and of the live workers of queue '{queue}' {why}", "qlora_unavailable")], []
    if unable:
        return [], [_warning("method", f"{len(unable)} of the {len(workers)} live workers of queue '{queue}' cannot "
                             "run qlora (no CUDA GPU or no bitsandbytes); a job that lands there fails")]
    return [], []


def _gpu_count_fit(spec: JobSpec, queue: str, workers: list[Worker]):
    needed = spec.resources.gpus
    if needed == 1:  # a worker without GPUs runs it on the CPU
        return [], []
    able, unable = _split(workers, lambda worker: len(worker.gpu_ids) >= needed)
    if not able:
        largest = max(len(worker.gpu_ids) for worker in workers)
        return [problem(("resources", "gpus"), f"the job needs {needed} GPUs and the live workers of queue "
                        f"'{queue}' have at most {largest}: lower resources.gpus, or start a worker with "
                        f"--gpus {','.join(map(str, range(needed)))} on this queue", "not_enough_gpus")], []
    if unable:
        return [], [_warning("resources.gpus", f"{len(unable)} of the {len(workers)} live workers of queue "
                             f"'{queue}' have fewer than {needed} GPUs; a job that lands there fails with "
                             "not_enough_gpus")]
    return [], []
