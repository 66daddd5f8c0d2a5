"""The training process's contract with its supervisor: exit codes, and the error it writes to
its run before exiting with EXIT_FAILED. Imports nothing heavy (the supervisor imports it)."""

import errno
from typing import Any

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_STOPPED = 3
EXIT_DATABASE_UNAVAILABLE = 4  # could not report for longer than TRAINDOCK_DB_RETRY_S

MAX_MESSAGE_CHARS = 2000

OUT_OF_MEMORY_ADVICE = (
    "lower per_device_train_batch_size (micro_batch_size) or cutoff_len, and raise "
    "gradient_accumulation_steps to keep the effective batch size "
    "(per_device_train_batch_size x gradient_accumulation_steps)"
)
BF16_ADVICE = (
    "bf16 needs an NVIDIA Ampere or newer GPU: set bf16 to false, and use fp16 instead on an older GPU"
)
# Allocator messages: CUDA/MPS "out of memory", torch's CPU allocator ("DefaultCPUAllocator: not
# enough memory" / "can't allocate memory"), and errno 12 ("Cannot allocate memory").
OUT_OF_MEMORY_MESSAGES = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")


class TrainingFailure(Exception):
    """A failure whose cause is known; `code` is what the run's error reports."""

    code = "training_error"
    advice: str | None = None

    def __init__(self, message: str, advice: str | None = None):
        super().__init__(message)
        if advice is not None:
            self.advice = advice


class BadModel(TrainingFailure):
    code = "bad_model"


class BadDataset(TrainingFailure):
    code = "bad_dataset"


class Bf16Unsupported(TrainingFailure):
    code = "bf16_unsupported"
    advice = BF16_ADVICE


class QloraUnavailable(TrainingFailure):
    code = "qlora_unavailable"
    advice = ("method 'qlora' runs on a worker with a CUDA GPU and bitsandbytes (pip install 'traindock[gpu]'): "
              "route the job to such a queue (resources.queue), or use method 'lora'")


DISK_FULL_ADVICE = (
    "free space where the job's output folder is, or keep fewer checkpoints (lower save_total_limit); "
    "then resume the job: its earlier checkpoints are intact"
)
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# safetensors and torch's zip writer report a full disk in their own words.
DISK_FULL_MESSAGES = ("no space left on device", "storagefull", "disk quota exceeded")


class DiskFull(TrainingFailure):
    code = "disk_full"
    advice = DISK_FULL_ADVICE


STORAGE_ADVICE = (
    "the object store (TRAINDOCK_STORAGE_URL) did not answer for longer than TRAINDOCK_STORAGE_RETRY_S: check that "
    "it is reachable from the worker, then resume the job: its earlier checkpoints are intact"
)


class TrainingStopped(Exception):
    """Raised once the checkpoint asked for by a stop request is recorded: the process then exits
    with EXIT_STOPPED without a final model."""


def _causes(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_out_of_memory(exc: BaseException) -> bool:
    for cause in _causes(exc):
        # torch.OutOfMemoryError (CUDA, also torch.cuda.OutOfMemoryError), matched by name so that
        # this module does not import torch.
        if isinstance(cause, MemoryError) or any(
            cls.__name__ == "OutOfMemoryError" for cls in type(cause).__mro__
        ):
            return True
        if isinstance(cause, OSError) and cause.errno == errno.ENOMEM:
            return True
        if isinstance(cause, RuntimeError) and any(
            text in str(cause).lower() for text in OUT_OF_MEMORY_MESSAGES
        ):
            return True
    return False


def is_disk_full(exc: BaseException) -> bool:
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(cause).lower() for text in DISK_FULL_MESSAGES):
            return True
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if not isinstance(exc, TrainingFailure):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def classify(exc: BaseException) -> dict[str, Any]:
    """The run error for an exception: {"code", "message", "advice"?}."""
    if isinstance(exc, TrainingFailure):
        error = {"code": exc.code, "message": _describe(exc)}
        if exc.advice:
            error["advice"] = exc.advice
        return error
    if is_out_of_memory(exc):
        return {
            "code": "out_of_memory",
            "message": f"out of memory: {OUT_OF_MEMORY_ADVICE}. {_describe(exc)}",
            "advice": OUT_OF_MEMORY_ADVICE,
        }
    if any(type(cause).__name__ in ("StorageUnavailable", "StorageRefused") for cause in _causes(exc)):
        return {"code": "storage_unavailable", "message": f"the object store failed: {_describe(exc)}",
                "advice": STORAGE_ADVICE}
    if is_disk_full(exc):
        return {"code": "disk_full", "message": f"the disk is full: {_describe(exc)}", "advice": DISK_FULL_ADVICE}
    return {"code": "training_error", "message": _describe(exc)}
