"""The spec's TrainingArguments kwargs against the installed transformers: whatever spec_problems
passes constructs, and whatever TrainingArguments refuses spec_problems refused first."""

import itertools
import warnings

import pytest

transformers = pytest.importorskip("transformers")

from jobspec import JobSpec, spec_problems, training_arguments  # noqa: E402

# Depends on the machine, not the spec: the worker reports these.
HARDWARE = ("support bf16",)


def build(spec: JobSpec, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated names in our kwargs
        return transformers.TrainingArguments(**training_arguments(spec, str(tmp_path)))


def try_build(spec: JobSpec, tmp_path) -> str | None:
    """None when TrainingArguments accepts the spec, else its error ("hardware: ..." for a refusal
    that depends on this machine)."""
    try:
        build(spec, tmp_path)
    except ValueError as exc:
        return f"hardware: {exc}" if any(words in str(exc) for words in HARDWARE) else str(exc)
    return None


def spec(**training) -> JobSpec:
    return JobSpec(base_model="m", dataset_id=1, data={"val_set_size": 0.1}, training=training)


VALID = [
    {},
    {"evaluation_strategy": "steps", "eval_steps": 50, "save_steps": 100, "load_best_model_at_end": True},
    {"eval_strategy": "steps", "save_strategy": "steps", "logging_steps": 20, "save_steps": 100,
     "load_best_model_at_end": True, "metric_for_best_model": "eval_loss"},
    {"eval_strategy": "epoch", "save_strategy": "epoch", "load_best_model_at_end": True, "save_total_limit": 2},
    {"eval_strategy": "steps", "eval_steps": 7, "save_strategy": "best", "load_best_model_at_end": True},
    {"eval_strategy": "epoch", "save_strategy": "best"},
    {"eval_strategy": "epoch", "lr_scheduler": "reduce_lr_on_plateau"},
    {"eval_strategy": "steps", "lr_scheduler_type": "greedy", "metric_for_best_model": "loss"},
    {"warmup_ratio": 0.1, "lr_scheduler": "cosine", "optimizer": "adamw_torch"},
    {"warmup_steps": 100, "max_steps": 1000},
    {"logging_steps": 0.01, "eval_strategy": "steps", "eval_steps": 0.1, "save_steps": 0.2,
     "load_best_model_at_end": True},
    {"eval_strategy": "steps", "save_steps": 0.3, "eval_steps": 0.1, "load_best_model_at_end": True},
    {"fp16": True},
    {"bf16": True},
    {"report_to": ["tensorboard"], "push_to_hub": True, "hub_model_id": "org/name"},
    {"gradient_checkpointing": True, "auto_find_batch_size": True, "ignore_data_skip": True},
    {"micro_batch_size": 2, "gradient_accumulation_steps": 16, "num_train_epochs": 1.5, "seed": 7},
    {"lr_scheduler_type": "polynomial", "learning_rate": 2e-4, "max_grad_norm": 0},
]


@pytest.mark.parametrize("training", VALID, ids=range(len(VALID)))
def test_valid_specs_construct_training_arguments(training, tmp_path):
    valid = spec(**training)
    assert spec_problems(valid) == []
    error = try_build(valid, tmp_path)
    if error and error.startswith("hardware: "):
        pytest.skip(error)
    assert error is None


def test_values_reach_training_arguments(tmp_path):
    args = build(spec(warmup_ratio=0.1, evaluation_strategy="epoch", save_strategy="best",
                      gradient_checkpointing=True), tmp_path)
    assert args.warmup_steps == 0.1 and args.eval_strategy == "epoch"
    assert args.metric_for_best_model == "loss" and args.greater_is_better is False
    assert args.gradient_checkpointing is True and args.activation_checkpointing is True
    assert args.report_to == [] and args.output_dir == str(tmp_path)


GRID = {
    "eval_strategy": ["no", "steps", "epoch"],
    "save_strategy": ["no", "steps", "epoch", "best"],
    "load_best_model_at_end": [False, True],
    "steps": [(500, None), (500, 100), (500, 300), (0.5, 0.25), (0.5, 0.3), (0.5, 3), (1, 0.5), (2.5, 10)],
    "lr_scheduler_type": ["linear", "reduce_lr_on_plateau", "greedy"],
    "precision": [(False, False), (True, True)],
}


def test_training_arguments_refuses_nothing_spec_problems_passes(tmp_path):
    checked = refused = 0
    for values in itertools.product(*GRID.values()):
        combo = dict(zip(GRID, values))
        save_steps, eval_steps = combo.pop("steps")
        fp16, bf16 = combo.pop("precision")
        candidate = spec(save_steps=save_steps, eval_steps=eval_steps, fp16=fp16, bf16=bf16, **combo)
        error = try_build(candidate, tmp_path)
        if error is not None and error.startswith("hardware: "):
            continue
        if error is not None:
            refused += 1
            assert spec_problems(candidate), f"TrainingArguments refused {combo}: {error}"
        elif not spec_problems(candidate):
            checked += 1
    assert checked > 50 and refused > 50
