"""Each cross-field rule: where it points and what its message tells the caller to do."""

import pytest

from jobspec import JobSpec, spec_problems


def spec(val_set_size=0.1, lora=None, **training) -> JobSpec:
    return JobSpec(
        base_model="org/model", dataset_id=1, data={"val_set_size": val_set_size},
        lora=lora or {}, training=training,
    )


def problems(**kwargs) -> dict[tuple, dict]:
    found = spec_problems(spec(**kwargs))
    assert all(set(p) == {"loc", "msg", "type"} and p["loc"][0] != "body" for p in found)
    return {p["loc"]: p for p in found}


def only(**kwargs) -> dict:
    found = spec_problems(spec(**kwargs))
    assert len(found) == 1, found
    return found[0]


def test_default_spec_has_no_problems():
    assert spec_problems(JobSpec(base_model="m", dataset_id=1)) == []


def test_fp16_and_bf16():
    p = only(fp16=True, bf16=True)
    assert p["loc"] == ("training", "bf16") and "cannot both be true" in p["msg"]


@pytest.mark.parametrize("name", ["logging_steps", "eval_steps", "save_steps"])
def test_fractional_steps_above_one(name):
    p = only(**{name: 2.5})
    assert p["loc"] == ("training", name)
    assert p["msg"].startswith(f"{name} 2.5 must be a whole number") and "use 2 or 3" in p["msg"]


@pytest.mark.parametrize("value", [0.5, 1, 1.0, 20.0])
def test_step_ratios_and_whole_steps_pass(value):
    assert spec_problems(spec(logging_steps=value, eval_steps=value, save_steps=value)) == []


def test_fractional_warmup_steps():
    p = only(warmup_steps=10.5)
    assert p["loc"] == ("training", "warmup_steps") and "use 10 or 11" in p["msg"]
    assert spec_problems(spec(warmup_steps=0.5)) == spec_problems(spec(warmup_steps=10)) == []


def test_max_steps_zero():
    p = only(max_steps=0)
    assert p["loc"] == ("training", "max_steps") and "-1" in p["msg"]


def test_evaluation_needs_a_validation_split():
    p = only(val_set_size=0, eval_strategy="epoch")
    assert p["loc"] == ("training", "eval_strategy")
    assert "data.val_set_size" in p["msg"] and "eval_strategy 'no'" in p["msg"]


@pytest.mark.parametrize(
    ("training", "loc"),
    [
        ({"load_best_model_at_end": True, "save_strategy": "no"}, ("training", "load_best_model_at_end")),
        ({"lr_scheduler_type": "reduce_lr_on_plateau"}, ("training", "lr_scheduler_type")),
        ({"lr_scheduler_type": "greedy"}, ("training", "lr_scheduler_type")),
        ({"save_strategy": "best"}, ("training", "save_strategy")),
    ],
)
def test_features_that_need_evaluation(training, loc):
    p = only(**training)
    assert p["loc"] == loc and p["type"] == "needs_evaluation"
    assert "eval_strategy is 'no'" in p["msg"] and "'steps' or 'epoch'" in p["msg"]
    assert "val_set_size" in p["msg"]


def test_features_with_evaluation_but_no_split_point_at_eval_strategy():
    found = problems(val_set_size=0, eval_strategy="epoch", save_strategy="epoch",
                     load_best_model_at_end=True, lr_scheduler_type="reduce_lr_on_plateau")
    assert list(found) == [("training", "eval_strategy")]


def test_load_best_needs_matching_strategies():
    p = only(eval_strategy="epoch", save_strategy="steps", load_best_model_at_end=True)
    assert p["loc"] == ("training", "save_strategy")
    assert "must match eval_strategy 'epoch'" in p["msg"] and "'best'" in p["msg"]


@pytest.mark.parametrize(
    ("save_strategy", "save_steps", "eval_steps"),
    [("best", 500, 7), ("steps", 500, 100), ("steps", 500, None), ("steps", 0.5, 0.25), ("steps", 0.3, 0.1),
     ("steps", 1, 0.5)],
)
def test_load_best_steps_that_pass(save_strategy, save_steps, eval_steps):
    assert spec_problems(spec(
        eval_strategy="steps", save_strategy=save_strategy, save_steps=save_steps, eval_steps=eval_steps,
        load_best_model_at_end=True,
    )) == []


def test_load_best_save_steps_not_a_multiple():
    p = only(eval_strategy="steps", save_strategy="steps", save_steps=500, eval_steps=300,
             load_best_model_at_end=True)
    assert p["loc"] == ("training", "save_steps")
    assert "round multiple of eval_steps" in p["msg"] and "500 is not a multiple of 300" in p["msg"]


def test_load_best_eval_steps_default_to_logging_steps():
    p = only(eval_strategy="steps", save_strategy="steps", save_steps=500, logging_steps=30,
             load_best_model_at_end=True)
    assert "logging_steps" in p["msg"] and "not a multiple of 30" in p["msg"]


def test_load_best_mixing_ratio_and_steps():
    p = only(eval_strategy="steps", save_strategy="steps", save_steps=0.5, eval_steps=3,
             load_best_model_at_end=True)
    assert p["loc"] == ("training", "save_steps") and "ratio" in p["msg"]


def test_load_best_ratios_not_a_multiple():
    p = only(eval_strategy="steps", save_strategy="steps", save_steps=0.5, eval_steps=0.3,
             load_best_model_at_end=True)
    assert p["type"] == "save_steps_not_multiple"


def test_push_to_hub_needs_hub_model_id():
    p = only(push_to_hub=True)
    assert p["loc"] == ("training", "hub_model_id") and "hub_model_id" in p["msg"]
    assert spec_problems(spec(push_to_hub=True, hub_model_id="org/name")) == []


@pytest.mark.parametrize("value", ["none", "all", "wandb", ["tensorboard", "wandb"], [], ["none"]])
def test_report_to_accepted(value):
    assert spec_problems(spec(report_to=value)) == []


def test_report_to_unknown_name():
    p = only(report_to=["tensorboard", "wandbb"])
    assert p["loc"] == ("training", "report_to")
    assert "unknown report_to integration 'wandbb'" in p["msg"] and "did you mean 'wandb'" in p["msg"]


@pytest.mark.parametrize("value", [["none", "wandb"], ["all", "tensorboard"]])
def test_report_to_none_or_all_alone(value):
    p = only(report_to=value)
    assert "cannot be combined" in p["msg"]


@pytest.mark.parametrize(
    ("modules", "words"),
    [("q_proj", "'all-linear' or a list"), ([], "empty"), (["q_proj", " "], "empty name")],
)
def test_lora_target_modules(modules, words):
    p = only(lora={"target_modules": modules})
    assert p["loc"] == ("lora", "target_modules") and words in p["msg"]


def test_lora_target_modules_accepted():
    assert spec_problems(spec(lora={"target_modules": ["q_proj", "v_proj"]})) == []


def test_val_set_size_row_count_must_be_whole():
    p = only(val_set_size=100.5)
    assert p["loc"] == ("data", "val_set_size") and "row count" in p["msg"] and "use 100" in p["msg"]
    assert spec_problems(spec(val_set_size=100)) == []


@pytest.mark.parametrize("schedule", ["cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay"])
def test_schedules_that_need_kwargs(schedule):
    p = only(lr_scheduler_type=schedule)
    assert p["loc"] == ("training", "lr_scheduler_type") and "lr_scheduler_kwargs" in p["msg"]


def test_polynomial_needs_learning_rate_above_lr_end():
    p = only(lr_scheduler_type="polynomial", learning_rate=1e-7)
    assert p["loc"] == ("training", "learning_rate")
    assert spec_problems(spec(lr_scheduler_type="polynomial", learning_rate=1e-6)) == []


@pytest.mark.parametrize("optim", ["galore_adamw", "apollo_adamw_layerwise"])
def test_optimizers_that_need_target_modules(optim):
    p = only(optim=optim)
    assert p["loc"] == ("training", "optim") and "optim_target_modules" in p["msg"]


def test_gradient_checkpointing_with_auto_find_batch_size():
    assert spec_problems(spec(gradient_checkpointing=True, auto_find_batch_size=True)) == []


def test_several_problems_at_once():
    found = problems(fp16=True, bf16=True, max_steps=0, push_to_hub=True, report_to="nope")
    assert set(found) == {("training", "bf16"), ("training", "max_steps"), ("training", "hub_model_id"),
                          ("training", "report_to")}


def test_metric_for_best_model_must_be_one_evaluation_computes():
    from jobspec import JobSpec, spec_problems

    def problems(metric):
        spec = JobSpec(base_model="org/m", dataset_id=1, data={"val_set_size": 0.1}, training={
            "eval_strategy": "steps", "eval_steps": 10, "save_steps": 10,
            "load_best_model_at_end": True, "metric_for_best_model": metric})
        return [p for p in spec_problems(spec) if p["loc"] == ("training", "metric_for_best_model")]

    assert problems("loss") == [] and problems("eval_loss") == [] and problems("eval_runtime") == []
    [problem] = problems("accuracy")
    assert "not computed by evaluation" in problem["msg"] and "loss" in problem["msg"]


def test_qlora_needs_bf16_or_fp16_as_compute_precision():
    def qlora(**training):
        return spec_problems(JobSpec(base_model="org/model", dataset_id=1, method="qlora", training=training))

    [found] = qlora()
    assert found["loc"] == ("method",) and "training.bf16" in found["msg"] and "training.fp16" in found["msg"]
    assert qlora(bf16=True) == [] and qlora(fp16=True) == []
