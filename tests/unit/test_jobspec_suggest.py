"""Did-you-mean for unknown fields, at every level of the spec, with and without FastAPI's "body"."""

import pytest
from pydantic import ValidationError

from jobspec import JobSpec, explain_unknown_fields


def messages(body: dict, prefix: tuple = ("body",)) -> dict[tuple, str]:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({"base_model": "m", "dataset_id": 1, **body})
    errors = [{**e, "loc": prefix + e["loc"]} for e in caught.value.errors()]
    return {e["loc"][len(prefix):]: e["msg"] for e in explain_unknown_fields(errors)}


@pytest.mark.parametrize("prefix", [(), ("body",)])
@pytest.mark.parametrize(
    ("body", "loc", "msg"),
    [
        ({"training": {"learning_rat": 1e-4}}, ("training", "learning_rat"),
         "unknown field 'learning_rat'; did you mean 'learning_rate'?"),
        ({"training": {"evaluation_strategi": "no"}}, ("training", "evaluation_strategi"),
         "unknown field 'evaluation_strategi'; did you mean 'evaluation_strategy'?"),
        ({"data": {"cutof_len": 9}}, ("data", "cutof_len"), "unknown field 'cutof_len'; did you mean 'cutoff_len'?"),
        ({"lora": {"rank": 9}}, ("lora", "rank"), "unknown field 'rank' in 'lora'; valid fields: r, alpha,"),
        ({"lora": {"lora_alpha": 9}}, ("lora", "lora_alpha"), "did you mean 'alpha'?"),
        ({"resources": {"gpu": 2}}, ("resources", "gpu"), "unknown field 'gpu'; did you mean 'gpus'?"),
        ({"resume_from_checkpoint": {"job_id": 1, "stepp": 2}}, ("resume_from_checkpoint", "stepp"),
         "did you mean 'step'?"),
        ({"bas_model": "x"}, ("bas_model",), "unknown field 'bas_model'; did you mean 'base_model'?"),
        ({"learning_rate": 1e-4}, ("learning_rate",),
         "unknown field 'learning_rate' at the top level; 'learning_rate' belongs in 'training'"),
        ({"lerning_rate": 1e-4}, ("lerning_rate",), "did you mean 'learning_rate' in 'training'?"),
        ({"warmup_ratio": 0.1}, ("warmup_ratio",), "'warmup_ratio' belongs in 'training'"),
        ({"training": {"cutoff_len": 9}}, ("training", "cutoff_len"),
         "unknown field 'cutoff_len' in 'training'; 'cutoff_len' belongs in 'data'"),
        ({"training": {"output_dir": "x"}}, ("training", "output_dir"), "'output_dir' belongs at the top level"),
    ],
)
def test_unknown_field_messages(prefix, body, loc, msg):
    assert msg in messages(body, prefix)[loc]


def test_other_errors_are_unchanged():
    errors = [
        {"loc": ("body", "training", "learning_rate"), "msg": "Input should be greater than 0",
         "type": "greater_than", "input": -1, "ctx": {"gt": 0}},
        {"loc": ("query", "x"), "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
    ]
    assert explain_unknown_fields(errors) == errors


def test_embedded_body_name_and_input_not_mutated():
    error = {"loc": ("body", "spec", "training", "lr"), "msg": "Extra inputs are not permitted",
             "type": "extra_forbidden", "input": 1}
    [explained] = explain_unknown_fields([error])
    assert "unknown field 'lr'" in explained["msg"]
    assert error["msg"] == "Extra inputs are not permitted"
    assert {k: v for k, v in explained.items() if k != "msg"} == {k: v for k, v in error.items() if k != "msg"}
