"""worker.errors.classify: the code, message and advice a failed run reports."""

import pytest

from worker.errors import (
    MAX_MESSAGE_CHARS, BadDataset, BadModel, Bf16Unsupported, TrainingFailure, classify,
)


def test_known_failures_keep_their_code_message_and_advice():
    assert classify(BadModel("no config.json")) == {"code": "bad_model", "message": "no config.json"}
    assert classify(BadDataset("line 3 is not valid JSON"))["code"] == "bad_dataset"
    bf16 = classify(Bf16Unsupported("bf16 was requested"))
    assert bf16["code"] == "bf16_unsupported" and "fp16" in bf16["advice"]
    assert classify(TrainingFailure("checkpoint gone", advice="start over"))["advice"] == "start over"


@pytest.mark.parametrize("exc", [
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 50183168256 bytes. Error code 12 (Cannot allocate memory)"),
    RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1073741824 bytes."),
    MemoryError(),
    OSError(12, "Cannot allocate memory"),
])
def test_allocator_failures_are_out_of_memory_with_the_batch_advice(exc):
    error = classify(exc)
    assert error["code"] == "out_of_memory"
    for advice in ("per_device_train_batch_size", "cutoff_len", "gradient_accumulation_steps"):
        assert advice in error["message"] and advice in error["advice"]


def test_torch_out_of_memory_error_is_recognised_by_its_class():
    torch = pytest.importorskip("torch")
    assert classify(torch.OutOfMemoryError("allocation failed"))["code"] == "out_of_memory"


def test_an_out_of_memory_cause_counts():
    try:
        try:
            raise MemoryError()
        except MemoryError as cause:
            raise ValueError("while collating") from cause
    except ValueError as exc:
        assert classify(exc)["code"] == "out_of_memory"


def test_anything_else_is_a_training_error_named_by_its_type():
    assert classify(ValueError("bad target_modules")) == {
        "code": "training_error", "message": "ValueError: bad target_modules",
    }
    assert classify(RuntimeError("shape mismatch"))["code"] == "training_error"
    assert classify(StopIteration()) == {"code": "training_error", "message": "StopIteration"}
    assert len(classify(KeyError("x" * 10_000))["message"]) == MAX_MESSAGE_CHARS
