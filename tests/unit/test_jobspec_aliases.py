"""The parameter document's names are accepted, stored under TrainingArguments' names, and their
problems are reported at the name the caller wrote."""

import pytest
from pydantic import ValidationError

from jobspec import JobSpec, TrainingSpec


def spec(**training) -> JobSpec:
    return JobSpec(base_model="org/model", dataset_id=1, training=training)


def errors(**training) -> list[dict]:
    with pytest.raises(ValidationError) as caught:
        spec(**training)
    return caught.value.errors()


@pytest.mark.parametrize(
    ("alias", "value", "name", "stored"),
    [
        ("evaluation_strategy", "epoch", "eval_strategy", "epoch"),
        ("optimizer", "adamw_torch", "optim", "adamw_torch"),
        ("lr_scheduler", "cosine", "lr_scheduler_type", "cosine"),
        ("micro_batch_size", 4, "per_device_train_batch_size", 4),
        ("warmup_ratio", 0.1, "warmup_steps", 0.1),
    ],
)
def test_alias_is_stored_under_the_field_name(alias, value, name, stored):
    dumped = spec(**{alias: value}).model_dump()
    assert dumped["training"][name] == stored
    assert alias not in dumped["training"]


def test_dump_has_canonical_names_only():
    dumped = spec(
        evaluation_strategy="steps", optimizer="sgd", lr_scheduler="constant", micro_batch_size=2,
        warmup_ratio=0.2, save_safetensors=True,
    ).model_dump(mode="json")
    assert set(dumped["training"]) == set(TrainingSpec.model_fields)
    assert JobSpec.model_validate(dumped).model_dump(mode="json") == dumped


def test_save_safetensors_true_is_dropped():
    assert spec(save_safetensors=True) == spec()


def test_save_safetensors_false_is_refused_at_the_field():
    [error] = errors(save_safetensors=False)
    assert error["loc"] == ("training", "save_safetensors")
    assert error["type"] == "safetensors_required"
    assert "transformers 5 always" in error["msg"] and "safetensors" in error["msg"]


@pytest.mark.parametrize(
    ("given", "loc"),
    [
        ({"optimizer": "sgd", "optim": "adamw_torch"}, ("training", "optimizer")),
        ({"evaluation_strategy": "no", "eval_strategy": "no"}, ("training", "evaluation_strategy")),
        ({"lr_scheduler": "linear", "lr_scheduler_type": "cosine"}, ("training", "lr_scheduler")),
        ({"micro_batch_size": 1, "per_device_train_batch_size": 2}, ("training", "micro_batch_size")),
        ({"warmup_ratio": 0.1, "warmup_steps": 10}, ("training", "warmup_ratio")),
    ],
)
def test_alias_conflict_is_reported_at_the_alias(given, loc):
    [error] = errors(**given)
    assert error["loc"] == loc
    assert "not both" in error["msg"] or "only one" in error["msg"]


@pytest.mark.parametrize("ratio", [1, 1.5, -0.1, "x", True])
def test_warmup_ratio_out_of_range(ratio):
    [error] = errors(warmup_ratio=ratio)
    assert error["loc"] == ("training", "warmup_ratio")
    assert "from 0 up to (not including) 1" in error["msg"]


def test_bad_alias_value_is_reported_at_the_alias():
    [error] = errors(optimizer="adam")
    assert error["loc"] == ("training", "optimizer")
    assert error["type"] == "literal_error"


def test_alias_errors_come_with_the_other_field_errors():
    found = {e["loc"]: e["type"] for e in errors(save_safetensors=False, learning_rate=-1, bogus=1)}
    assert found == {
        ("training", "save_safetensors"): "safetensors_required",
        ("training", "learning_rate"): "greater_than",
        ("training", "bogus"): "extra_forbidden",
    }


def test_alias_errors_from_json_input():
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate_json(
            '{"base_model": "m", "dataset_id": 1, "training": {"optimizer": "sgd", "optim": "sgd"}}'
        )
    assert caught.value.errors()[0]["loc"] == ("training", "optimizer")


def test_resume_from_a_path_is_refused_with_the_right_shape():
    with pytest.raises(ValidationError) as caught:
        JobSpec(base_model="m", dataset_id=1, resume_from_checkpoint="/runs/checkpoint-500")
    [error] = caught.value.errors()
    assert error["loc"] == ("resume_from_checkpoint",)
    assert "job_id" in error["msg"] and "never a path" in error["msg"]
