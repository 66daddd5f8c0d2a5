"""Tuning advice from the parameter document's tips: warnings, never rejections."""

import pytest

from jobspec import JobSpec, spec_problems, tuning_warnings

GOOD = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 4, "learning_rate": 5e-5,
        "warmup_steps": 0.1, "max_grad_norm": 1.0}


def advice(method="lora", data=None, resources=None, **training) -> dict[str, dict]:
    spec = JobSpec(base_model="m", dataset_id=1, method=method, data=data or {}, resources=resources or {},
                   training={**GOOD, **training})
    items = tuning_warnings(spec)
    assert all(set(i) == {"field", "level", "msg"} and i["level"] in ("warning", "info") for i in items)
    return {i["field"]: i for i in items}


def test_document_values_give_no_advice():
    assert advice() == {}


@pytest.mark.parametrize(("lr", "words"), [(1e-6, "under-train"), (1e-3, "unstable")])
def test_learning_rate_outside_the_documents_range(lr, words):
    item = advice(learning_rate=lr)["training.learning_rate"]
    assert "outside 1e-5..1e-4" in item["msg"] and words in item["msg"] and item["level"] == "warning"


def test_lora_learning_rate_note():
    assert "LoRA" in advice(learning_rate=2e-4)["training.learning_rate"]["msg"]
    assert "LoRA" not in advice(method="full", learning_rate=2e-4)["training.learning_rate"]["msg"]


def test_effective_batch_size_counts_gpus():
    item = advice(gradient_accumulation_steps=1)["training.per_device_train_batch_size"]
    assert item["level"] == "info" and "effective batch size 8" in item["msg"] and "32..128" in item["msg"]
    assert "training.per_device_train_batch_size" not in advice(gradient_accumulation_steps=1,
                                                                resources={"gpus": 4})


@pytest.mark.parametrize(
    ("training", "field", "words"),
    [
        ({"gradient_accumulation_steps": 16, "per_device_train_batch_size": 4}, "training.gradient_accumulation_steps", "1..8"),
        ({"num_train_epochs": 50}, "training.num_train_epochs", "10..30"),
        ({"warmup_steps": 0}, "training.warmup_steps", "0.1..0.2"),
        ({"warmup_steps": 0.5}, "training.warmup_steps", "0.1..0.2"),
        ({"max_grad_norm": 5.0}, "training.max_grad_norm", "1.0..2.0"),
        ({"max_grad_norm": 0}, "training.max_grad_norm", "disables"),
        ({"ignore_data_skip": True}, "training.ignore_data_skip", "not reproduce"),
        ({"fp16": True}, "training.fp16", "bf16"),
        ({"save_strategy": "no"}, "training.save_strategy", "from scratch"),
        ({"metric_for_best_model": "loss"}, "training.metric_for_best_model", "unused"),
        ({"eval_strategy": "epoch", "save_strategy": "best", "metric_for_best_model": "perplexity"},
         "training.greater_is_better", "larger 'perplexity' as better"),
    ],
)
def test_advice(training, field, words):
    data = {"val_set_size": 0.1} if training.get("eval_strategy") else {}
    assert words in advice(data=data, **training)[field]["msg"]


def test_held_out_rows_never_evaluated():
    assert "never evaluates" in advice(data={"val_set_size": 0.1})["training.eval_strategy"]["msg"]


def test_epochs_advice_skipped_with_max_steps():
    assert "training.num_train_epochs" not in advice(num_train_epochs=50, max_steps=100)


def test_advice_never_rejects():
    spec = JobSpec(base_model="m", dataset_id=1, training={"learning_rate": 1, "num_train_epochs": 500,
                                                             "gradient_accumulation_steps": 64})
    assert tuning_warnings(spec) and spec_problems(spec) == []
