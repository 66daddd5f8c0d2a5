"""The spec of preference training (objective dpo or orpo): fields, cross-field rules, the memory
planner's reference model, and /v1's method mapping."""

import pytest
from pydantic import ValidationError

from api.openai_compat.errors import OpenAIError
from api.openai_compat.job_request import DpoHyperparameters, apply_method, method_hyperparameters
from jobspec import spec_problems
from jobspec.memory import memory_estimate
from jobspec.model import JobSpec
from tests.unit.test_jobspec_memory import LLAMA_2_7B


def spec(**fields) -> JobSpec:
    return JobSpec.model_validate({"base_model": "m", "dataset_id": 1, **fields})


def problems(**fields) -> list[tuple[tuple, str]]:
    return [(p["loc"], p["type"]) for p in spec_problems(spec(**fields))]


def test_supervised_stays_the_default_and_preference_settings_are_stored():
    assert spec().objective == "sft" and problems() == []
    dpo = spec(objective="dpo", preference={"beta": 0.3, "loss_type": "ipo", "max_prompt_length": 32})
    assert problems(**dpo.model_dump()) == []
    stored = dpo.model_dump(mode="json")
    assert stored["objective"] == "dpo" and stored["preference"]["loss_type"] == "ipo"


@pytest.mark.parametrize("field, value", [("loss_type", "kto"), ("beta", 0), ("reference", "copy"),
                                          ("max_prompt_length", 0)])
def test_bad_preference_fields_are_refused(field, value):
    with pytest.raises(ValidationError) as refused:
        spec(objective="dpo", preference={field: value})
    assert refused.value.errors()[0]["loc"] == ("preference", field)


@pytest.mark.parametrize("fields, loc", [
    ({"objective": "dpo", "data": {"packing": True}}, ("data", "packing")),
    ({"objective": "orpo", "data": {"group_by_length": True}}, ("data", "group_by_length")),
    ({"objective": "dpo", "evaluation": {"sample_prompts": ["hi"]}}, ("evaluation",)),
])
def test_what_preference_trainers_cannot_do_is_refused(fields, loc):
    [(found, kind)] = problems(**fields)
    assert (found, kind) == (loc, "not_with_preference_training")


@pytest.mark.parametrize("field, value", [("loss_type", "ipo"), ("reference", "precomputed"),
                                          ("max_prompt_length", 16)])
def test_dpo_only_settings_are_refused_for_orpo(field, value):
    assert problems(objective="orpo", preference={field: value}) == [(("preference", field), "dpo_only")]


def test_preference_settings_without_a_preference_objective_are_refused():
    assert problems(preference={"beta": 0.5}) == [(("preference",), "preference_without_objective")]


def test_reward_metrics_pick_the_best_checkpoint_of_preference_jobs_only():
    training = {"eval_strategy": "steps", "metric_for_best_model": "eval_rewards/accuracies",
                "load_best_model_at_end": True, "save_strategy": "best"}
    assert problems(objective="dpo", data={"val_set_size": 4}, training=training) == []
    assert problems(data={"val_set_size": 4}, training=training) == [
        (("training", "metric_for_best_model"), "unknown_metric")]


def test_full_fine_tuning_dpo_counts_a_frozen_reference_copy():
    supervised = memory_estimate(LLAMA_2_7B, spec(method="full"))["bytes"]
    dpo = memory_estimate(LLAMA_2_7B, spec(method="full", objective="dpo"))["bytes"]
    assert dpo["reference_model"] == supervised["trainable_parameters"]  # fp32, as the trained weights
    assert dpo["activations"] == 2 * supervised["activations"]  # chosen and rejected in one batch
    assert dpo["total"] == sum(value for name, value in dpo.items() if name != "total")
    for fields in ({"method": "lora", "objective": "dpo"},
                   {"method": "full", "objective": "dpo", "preference": {"reference": "precomputed"}},
                   {"method": "full", "objective": "orpo"}):
        assert "reference_model" not in memory_estimate(LLAMA_2_7B, spec(**fields))["bytes"], fields


def test_openai_methods_map_onto_the_objective():
    assert method_hyperparameters(None) == ("supervised", None)
    assert method_hyperparameters({"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}}) == (
        "dpo", {"beta": 0.2})
    with pytest.raises(OpenAIError) as refused:
        method_hyperparameters({"type": "reinforcement"})
    assert (refused.value.status, refused.value.param) == (400, "method.type")
    native: dict = {}
    apply_method(native, "dpo", DpoHyperparameters(beta=0.2))
    assert native == {"objective": "dpo", "preference": {"beta": 0.2}}
    apply_method(native := {}, "dpo", DpoHyperparameters())
    assert native == {"objective": "dpo"}
