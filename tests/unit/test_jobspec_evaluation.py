"""The spec's evaluation section (sample generations, generation metrics) and its rules."""

import pytest
from pydantic import ValidationError

from jobspec import JobSpec, spec_problems, tuning_warnings


def spec(evaluation=None, val_set_size=0.1, gpus=1, **training) -> JobSpec:
    return JobSpec(base_model="org/model", dataset_id=1, data={"val_set_size": val_set_size},
                   training=training, evaluation=evaluation or {}, resources={"gpus": gpus})


def problems(*args, **kwargs) -> dict[tuple, dict]:
    return {p["loc"]: p for p in spec_problems(spec(*args, **kwargs))}


BEST_BY = {"eval_strategy": "steps", "eval_steps": 10, "save_steps": 10, "load_best_model_at_end": True}


def test_defaults_are_empty_and_stored():
    evaluation = JobSpec(base_model="m", dataset_id=1).evaluation
    assert not evaluation.enabled and evaluation.sample_prompts == [] and evaluation.generation_metrics == []
    assert evaluation.samples_from_validation == 0 and evaluation.max_new_tokens == 64
    assert evaluation.generation_max_rows == 64 and evaluation.max_generation_s > 0


def test_prompts_are_texts_or_messages():
    prompts = ["Say hi.", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]]
    stored = spec({"sample_prompts": prompts}).model_dump(mode="json")["evaluation"]["sample_prompts"]
    assert stored == prompts


@pytest.mark.parametrize("evaluation, where", [
    ({"sample_prompts": ["x"] * 17}, ("evaluation", "sample_prompts")),
    ({"sample_prompts": [[]]}, ("evaluation", "sample_prompts")),
    ({"sample_prompts": [[{"role": "system", "content": "no question"}]]}, ("evaluation", "sample_prompts")),
    ({"sample_prompts": [[{"role": "robot", "content": "x"}]]}, ("evaluation", "sample_prompts", 0)),
    ({"samples_from_validation": 65}, ("evaluation", "samples_from_validation")),
    ({"samples_from_validation": -1}, ("evaluation", "samples_from_validation")),
    ({"generation_metrics": ["accuracy"]}, ("evaluation", "generation_metrics", 0)),
    ({"max_new_tokens": 0}, ("evaluation", "max_new_tokens")),
    ({"max_generation_s": 0}, ("evaluation", "max_generation_s")),
    ({"temperature": 0.7}, ("evaluation", "temperature")),
])
def test_field_limits(evaluation, where):
    with pytest.raises(ValidationError) as caught:
        spec(evaluation)
    assert any(error["loc"][:len(where)] == where for error in caught.value.errors()), caught.value.errors()


@pytest.mark.parametrize("field, value", [("generation_metrics", ["rouge_l"]), ("samples_from_validation", 3)])
def test_validation_rows_need_an_evaluation_set(field, value):
    found = problems({field: value}, val_set_size=0)
    assert set(found) == {("evaluation", field)}
    assert "data.val_set_size" in found[("evaluation", field)]["msg"]
    assert problems({field: value}) == {}
    assert spec_problems(JobSpec(base_model="m", dataset_id=1, validation_dataset_id=2,
                                 evaluation={field: value})) == []


def test_sample_prompts_alone_need_no_evaluation_set():
    assert problems({"sample_prompts": ["Hi"]}, val_set_size=0) == {}


@pytest.mark.parametrize("metric", ["eval_rouge_l", "rouge_l", "bleu", "eval_exact_match"])
def test_metric_for_best_model_may_be_a_listed_generation_metric(metric):
    name = metric.removeprefix("eval_")
    assert problems({"generation_metrics": [name]}, metric_for_best_model=metric, **BEST_BY) == {}
    [problem] = problems({"generation_metrics": []}, metric_for_best_model=metric, **BEST_BY).values()
    assert problem["loc"] == ("training", "metric_for_best_model")
    assert "evaluation.generation_metrics" in problem["msg"] and f"'{name}'" in problem["msg"]


def test_unknown_best_metric_names_the_listed_generation_metrics():
    found = problems({"generation_metrics": ["bleu"]}, metric_for_best_model="accuracy", **BEST_BY)
    assert "not computed by evaluation" in found[("training", "metric_for_best_model")]["msg"]
    assert "bleu" in found[("training", "metric_for_best_model")]["msg"]


def test_generation_metrics_are_greater_is_better():
    """transformers defaults greater_is_better to true for names not ending in 'loss': right for
    all three, so no advice about it."""
    transformers = pytest.importorskip("transformers")
    from jobspec import training_arguments

    chosen = spec({"generation_metrics": ["rouge_l"]}, metric_for_best_model="eval_rouge_l", **BEST_BY)
    args = transformers.TrainingArguments(**training_arguments(chosen, "/tmp/unused"))
    assert args.greater_is_better is True
    assert not any(item["field"] == "training.greater_is_better" for item in tuning_warnings(chosen))


def test_several_gpus_refuse_generation():
    found = problems({"sample_prompts": ["Hi"]}, gpus=2)
    assert set(found) == {("evaluation",)} and "resources.gpus" in found[("evaluation",)]["msg"]
    assert problems(gpus=2) == {}
