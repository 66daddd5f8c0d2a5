"""traindock rows as the objects the `openai` client parses: files, fine-tuning jobs, their
events and checkpoints, models. Timestamps are unix seconds."""

from datetime import datetime
from typing import Any

from api.openai_compat import ids
from api.openai_compat.job_request import BASE_LEARNING_RATE
from db.events import METRICS_LOGGED
from db.models import Checkpoint, Dataset, Event, Job
from db.status import JobStatus

# OpenAI has no "stopping" states: a job being cancelled or paused still runs until its
# checkpoint is written, so a client polling for a final status does not stop early.
STATUS = {
    JobStatus.QUEUED: "queued", JobStatus.RUNNING: "running", JobStatus.CANCELLING: "running",
    JobStatus.PAUSING: "running", JobStatus.PAUSED: "paused", JobStatus.INTERRUPTED: "running",
    JobStatus.SUCCEEDED: "succeeded", JobStatus.FAILED: "failed", JobStatus.CANCELLED: "cancelled",
    JobStatus.EARLY_STOPPING: "running", JobStatus.EARLY_STOPPED: "cancelled",
}
EVENT_LEVELS = {"job.failed": "error", "job.interrupted": "warn", "run.traceback": "error",
                "run.handoff_pending": "warn", "run.delivery_ignored": "warn"}
# traindock metric names -> the names OpenAI's metrics events and checkpoints use. The Trainer's
# own `train_loss` is its end-of-attempt average, not a step's loss.
METRIC_NAMES = {"loss": "train_loss", "train_loss": "mean_train_loss", "eval_loss": "valid_loss", "mean_token_accuracy": "train_mean_token_accuracy",
                "eval_mean_token_accuracy": "valid_mean_token_accuracy",
                # Generation metrics on the validation set (spec `evaluation.generation_metrics`).
                "eval_exact_match": "valid_exact_match", "eval_rouge_l": "valid_rouge_l", "eval_bleu": "valid_bleu"}


def unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


def file_object(dataset: Dataset) -> dict[str, Any]:
    return {
        "id": ids.encode(ids.FILE, dataset.id), "object": "file", "bytes": dataset.bytes,
        "created_at": unix(dataset.created_at), "filename": dataset.filename, "purpose": "fine-tune",
        "status": "processed", "status_details": None, "expires_at": None,
        "format": dataset.format, "rows": dataset.rows,
    }


def fine_tuned_model_id(job: Job) -> str | None:
    """`ft:<base model>:<suffix or 'traindock'>:ftjob-<id>`, once the job succeeded."""
    if job.status != JobStatus.SUCCEEDED:
        return None
    suffix = (job.openai or {}).get("suffix") or "traindock"
    return f"ft:{job.spec['base_model']}:{suffix}:{ids.encode(ids.JOB, job.id)}"


def checkpoint_model_id(job: Job, step: int) -> str:
    suffix = (job.openai or {}).get("suffix") or "traindock"
    return f"ft:{job.spec['base_model']}:{suffix}:{ids.encode(ids.JOB, job.id)}:ckpt-step-{step}"


def _hyperparameters(job: Job) -> dict[str, Any]:
    """What the job trains with, in OpenAI's terms (also for jobs submitted natively)."""
    training = job.spec.get("training", {})
    epochs = training.get("num_train_epochs")
    base = BASE_LEARNING_RATE.get(job.spec.get("method"), BASE_LEARNING_RATE["lora"])
    return {
        "n_epochs": int(epochs) if isinstance(epochs, float) and epochs.is_integer() else epochs,
        "batch_size": training.get("per_device_train_batch_size"),
        "learning_rate_multiplier": training["learning_rate"] / base if training.get("learning_rate") else None,
    }


def _method(job: Job, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's method object; objective 'orpo', which OpenAI lacks, under its own name."""
    objective = job.spec.get("objective", "sft")
    if objective == "sft":
        return {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}
    beta = job.spec.get("preference", {}).get("beta", 0.1)
    return {"type": objective, objective: {"hyperparameters": {**hyperparameters, "beta": beta}}}


def job_object(job: Job) -> dict[str, Any]:
    openai = job.openai or {}
    hyperparameters = _hyperparameters(job)
    error = None
    if job.error:
        error = {"code": job.error.get("code", "error"), "message": job.error.get("message", ""), "param": None}
    progress = job.progress or {}
    return {
        "id": ids.encode(ids.JOB, job.id), "object": "fine_tuning.job",
        "created_at": unix(job.created_at), "finished_at": unix(job.finished_at),
        "model": openai.get("model", job.spec["base_model"]),
        "fine_tuned_model": fine_tuned_model_id(job),
        "organization_id": f"tenant-{job.tenant_id}",
        "status": STATUS[JobStatus(job.status)], "traindock_status": job.status,
        "error": error, "hyperparameters": hyperparameters,
        "training_file": ids.encode(ids.FILE, job.spec["dataset_id"]),
        "validation_file": (ids.encode(ids.FILE, job.spec["validation_dataset_id"])
                            if job.spec.get("validation_dataset_id") else None),
        "result_files": [], "trained_tokens": (job.result or {}).get("num_input_tokens_seen"),
        "seed": job.spec.get("training", {}).get("seed"), "estimated_finish": None,
        "integrations": [], "metadata": openai.get("metadata"), "user_provided_suffix": openai.get("suffix"),
        "method": _method(job, hyperparameters),
        "progress": {"step": progress.get("step"), "percent": progress.get("percent")},
    }


def event_object(event: Event) -> dict[str, Any]:
    base = {"id": ids.encode(ids.EVENT, event.id), "object": "fine_tuning.job.event",
            "created_at": unix(event.created_at), "message": event.message}
    if event.type == METRICS_LOGGED:
        values = (event.data or {}).get("values", {})
        data = {"step": (event.data or {}).get("step"),
                **{METRIC_NAMES.get(name, name): value for name, value in values.items()}}
        return {**base, "level": "info", "type": "metrics", "data": data}
    return {**base, "level": EVENT_LEVELS.get(event.type, "info"), "type": "message",
            "data": {"traindock_type": event.type, **(event.data or {})}}


def checkpoint_object(job: Job, checkpoint: Checkpoint) -> dict[str, Any]:
    metrics = {METRIC_NAMES.get(name, name): value for name, value in (checkpoint.metrics or {}).items()}
    return {
        "id": ids.encode(ids.CHECKPOINT, checkpoint.id), "object": "fine_tuning.job.checkpoint",
        "created_at": unix(checkpoint.created_at), "fine_tuning_job_id": ids.encode(ids.JOB, job.id),
        "fine_tuned_model_checkpoint": checkpoint_model_id(job, checkpoint.step),
        "step_number": checkpoint.step, "metrics": {"step": checkpoint.step, **metrics},
    }


def model_object(model_id: str, created: int, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}
