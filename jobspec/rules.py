"""Cross-field rules: every combination TrainingArguments.__post_init__ (transformers 5.x) or the
Trainer would raise on for the fields we expose, refused here so it never reaches a worker.

Each problem is {"loc": ("training", "bf16"), "msg": ..., "type": ...}; the API prefixes "body".
Hardware-dependent failures (bf16 on a GPU without support, a missing optional package for an
optimizer) are the worker's to report.
"""

import difflib

from jobspec.choices import REPORT_INTEGRATIONS
from jobspec.model import GENERATION_METRICS, JobSpec, PreferenceSpec, TrainingSpec

# Need lr_scheduler_kwargs, which the spec does not expose (transformers' get_scheduler raises).
SCHEDULERS_NEEDING_KWARGS = {
    "cosine_with_min_lr": "min_lr or min_lr_rate",
    "cosine_warmup_with_min_lr": "min_lr or min_lr_rate",
    "warmup_stable_decay": "num_decay_steps",
}
POLYNOMIAL_LR_END = 1e-7  # get_polynomial_decay_schedule_with_warmup's lr_end; lr must be above it
# What Trainer.evaluate returns without a compute_metrics function (besides the epoch).
EVALUATION_METRICS = ("loss", "runtime", "samples_per_second", "steps_per_second")
# What TRL's DPOTrainer and ORPOTrainer add to an evaluation (as eval_<name>).
PREFERENCE_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                      "logps/rejected")
# Step metrics TrainingArguments receives; above 1 they must be whole numbers.
STEP_FIELDS = ("logging_steps", "eval_steps", "save_steps")


def _problem(loc: tuple, msg: str, kind: str) -> dict:
    return {"loc": loc, "msg": msg, "type": kind}


def effective_eval_steps(training: TrainingSpec) -> float:
    """eval_steps as TrainingArguments resolves it: unset means logging_steps."""
    return training.eval_steps if training.eval_steps is not None else training.logging_steps


def report_to_list(training: TrainingSpec) -> list[str]:
    return [training.report_to] if isinstance(training.report_to, str) else list(training.report_to)


def _steps_problems(t: TrainingSpec) -> list[dict]:
    problems = []
    for name in STEP_FIELDS:
        value = getattr(t, name)
        if value is not None and value > 1 and value != int(value):
            problems.append(_problem(
                ("training", name),
                f"{name} {value:g} must be a whole number of steps (values below 1 are a ratio of all "
                f"training steps): use {int(value)} or {int(value) + 1}",
                "steps_not_integer",
            ))
    if t.warmup_steps >= 1 and t.warmup_steps != int(t.warmup_steps):
        problems.append(_problem(
            ("training", "warmup_steps"),
            f"warmup_steps {t.warmup_steps:g} must be a whole number of steps from 1 up (below 1 it is a "
            f"ratio of all training steps): use {int(t.warmup_steps)} or {int(t.warmup_steps) + 1}",
            "steps_not_integer",
        ))
    if t.max_steps == 0:
        problems.append(_problem(
            ("training", "max_steps"),
            "max_steps 0 would train nothing: use -1 to train for num_train_epochs, or a positive "
            "number of optimizer steps",
            "max_steps_zero",
        ))
    return problems


def _evaluation_problems(spec: JobSpec) -> list[dict]:
    t = spec.training
    problems = []
    if spec.validation_dataset_id is not None and spec.data.val_set_size > 0:
        problems.append(_problem(
            ("data", "val_set_size"),
            "validation_dataset_id is the evaluation set, so nothing is held out of the training "
            "dataset: set data.val_set_size to 0 or drop validation_dataset_id",
            "two_validation_sets",
        ))
    if t.eval_strategy != "no" and spec.data.val_set_size == 0 and spec.validation_dataset_id is None:
        problems.append(_problem(
            ("training", "eval_strategy"),
            f"eval_strategy '{t.eval_strategy}' evaluates on a validation split, but data.val_set_size is "
            "0: set data.val_set_size (a fraction such as 0.05, or a row count), validation_dataset_id, "
            "or eval_strategy 'no'",
            "needs_validation_split",
        ))
    needs_eval = {
        "load_best_model_at_end": t.load_best_model_at_end,
        "lr_scheduler_type": t.lr_scheduler_type in ("reduce_lr_on_plateau", "greedy"),
        "save_strategy": t.save_strategy == "best",
    }
    what = {
        "load_best_model_at_end": "load_best_model_at_end picks the best checkpoint by evaluation",
        "lr_scheduler_type": f"lr_scheduler_type '{t.lr_scheduler_type}' steps on the evaluation metric",
        "save_strategy": "save_strategy 'best' saves when an evaluation finds a new best metric",
    }
    if t.eval_strategy == "no":
        for name, on in needs_eval.items():
            if on:
                problems.append(_problem(
                    ("training", name),
                    f"{what[name]}, but eval_strategy is 'no': set eval_strategy to 'steps' or 'epoch' "
                    "(and data.val_set_size above 0 for the validation split)",
                    "needs_evaluation",
                ))
    elif t.load_best_model_at_end and t.save_strategy != "best":
        problems += _best_model_problems(t)
    return problems


def _best_model_problems(t: TrainingSpec) -> list[dict]:
    """TrainingArguments' own load_best_model_at_end checks, in its order and arithmetic."""
    if t.eval_strategy != t.save_strategy:
        return [_problem(
            ("training", "save_strategy"),
            f"load_best_model_at_end needs a checkpoint at every evaluation: save_strategy "
            f"'{t.save_strategy}' must match eval_strategy '{t.eval_strategy}' (or be 'best')",
            "strategy_mismatch",
        )]
    if t.eval_strategy != "steps":
        return []
    save, ev = t.save_steps, effective_eval_steps(t)
    if save % ev == 0:
        return []
    if ev < 1 and save < 1:
        large = 1_000_000  # transformers compares ratios this way to dodge float error
        if (save * large) % (ev * large) == 0:
            return []
    source = "eval_steps" if t.eval_steps is not None else "eval_steps (unset, so logging_steps)"
    if (ev < 1) != (save < 1):
        msg = (f"load_best_model_at_end needs save_steps to be a multiple of {source}, which cannot be "
               f"guaranteed when one is a ratio and the other a step count ({save:g} and {ev:g}): give "
               "both as step counts or both as ratios")
    else:
        msg = (f"load_best_model_at_end needs save_steps to be a round multiple of {source}, but "
               f"{save:g} is not a multiple of {ev:g}: change save_steps or eval_steps")
    return [_problem(("training", "save_steps"), msg, "save_steps_not_multiple")]


def _report_to_problems(t: TrainingSpec) -> list[dict]:
    names = report_to_list(t)
    problems = []
    for name in names:
        if name not in ("all", "none", *REPORT_INTEGRATIONS):
            close = difflib.get_close_matches(name, REPORT_INTEGRATIONS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(_problem(
                ("training", "report_to"),
                f"unknown report_to integration '{name}': {hint}use 'none', 'all' or some of "
                + ", ".join(REPORT_INTEGRATIONS),
                "unknown_integration",
            ))
    special = [name for name in names if name in ("all", "none")]
    if special and len(names) > 1:
        problems.append(_problem(
            ("training", "report_to"),
            f"report_to '{special[0]}' cannot be combined with other names: give '{special[0]}' alone or "
            "a list of integrations",
            "report_to_combined",
        ))
    return problems


def _training_problems(t: TrainingSpec) -> list[dict]:
    problems = []
    if t.fp16 and t.bf16:
        problems.append(_problem(
            ("training", "bf16"),
            "fp16 and bf16 cannot both be true: keep bf16 on Ampere or newer GPUs, fp16 otherwise",
            "precision_conflict",
        ))
    if t.push_to_hub and not t.hub_model_id:
        problems.append(_problem(
            ("training", "hub_model_id"),
            "push_to_hub needs hub_model_id, the Hub repository to push to (e.g. 'my-org/my-model')",
            "missing_hub_model_id",
        ))
    if t.lr_scheduler_type in SCHEDULERS_NEEDING_KWARGS:
        problems.append(_problem(
            ("training", "lr_scheduler_type"),
            f"lr_scheduler_type '{t.lr_scheduler_type}' needs lr_scheduler_kwargs "
            f"({SCHEDULERS_NEEDING_KWARGS[t.lr_scheduler_type]}), which a job spec cannot set: "
            "use 'cosine', 'linear' or another schedule",
            "scheduler_needs_kwargs",
        ))
    if t.lr_scheduler_type == "polynomial" and t.learning_rate <= POLYNOMIAL_LR_END:
        problems.append(_problem(
            ("training", "learning_rate"),
            f"lr_scheduler_type 'polynomial' decays to {POLYNOMIAL_LR_END:g}, so learning_rate must be "
            "above it: raise learning_rate or pick another schedule",
            "learning_rate_below_lr_end",
        ))
    if t.optim.startswith(("galore_", "apollo_")):
        problems.append(_problem(
            ("training", "optim"),
            f"optim '{t.optim}' needs optim_target_modules, which a job spec cannot set: use "
            "'adamw_torch_fused' or another optimizer",
            "optimizer_needs_target_modules",
        ))
    return problems


def _best_metric_problems(spec: JobSpec) -> list[dict]:
    """Evaluation computes what Trainer.evaluate always returns, plus the generation metrics
    listed in evaluation.generation_metrics (no other compute_metrics), so only those can pick the
    best checkpoint; any other name would fail with a KeyError at the first evaluation."""
    name = spec.training.metric_for_best_model
    listed = [*spec.evaluation.generation_metrics, *(PREFERENCE_METRICS if spec.objective != "sft" else ())]
    if name is None or name.removeprefix("eval_") in (*EVALUATION_METRICS, *listed):
        return []
    if name.removeprefix("eval_") in GENERATION_METRICS:
        return [_problem(
            ("training", "metric_for_best_model"),
            f"metric_for_best_model '{name}' is a generation metric, computed only when listed: add "
            f"'{name.removeprefix('eval_')}' to evaluation.generation_metrics, or choose 'loss'",
            "generation_metric_not_listed",
        )]
    known = ", ".join((*EVALUATION_METRICS, *listed))
    return [_problem(
        ("training", "metric_for_best_model"),
        f"metric_for_best_model '{name}' is not computed by evaluation; choose one of {known} "
        "(with or without 'eval_'), or a generation metric listed in evaluation.generation_metrics "
        f"({', '.join(GENERATION_METRICS)}); 'loss' is the usual choice",
        "unknown_metric",
    )]


def _generation_problems(spec: JobSpec) -> list[dict]:
    """Sample generations and generation metrics (the evaluation section)."""
    ev = spec.evaluation
    problems = []
    has_eval_set = spec.data.val_set_size > 0 or spec.validation_dataset_id is not None
    if not has_eval_set:
        for name, on, what in (
            ("generation_metrics", bool(ev.generation_metrics), "generation metrics are computed on the validation set"),
            ("samples_from_validation", ev.samples_from_validation > 0, "samples_from_validation generates for "
             "validation rows"),
        ):
            if on:
                problems.append(_problem(
                    ("evaluation", name),
                    f"{what}, but there is none: set data.val_set_size (a fraction such as 0.05, or a row "
                    f"count) or validation_dataset_id, or remove evaluation.{name}",
                    "needs_validation_split",
                ))
    if ev.enabled and spec.resources.gpus > 1:
        problems.append(_problem(
            ("evaluation",),
            f"sample generation and generation metrics run in one training process, but resources.gpus is "
            f"{spec.resources.gpus}: set resources.gpus to 1, or remove evaluation.sample_prompts, "
            "samples_from_validation and generation_metrics",
            "generation_needs_one_gpu",
        ))
    return problems


def _data_problems(spec: JobSpec) -> list[dict]:
    if spec.data.packing and spec.data.group_by_length:
        return [_problem(
            ("data", "group_by_length"),
            "packing and group_by_length exclude each other (packed sequences are all about "
            "cutoff_len long, so there is nothing to group): keep one",
            "packing_with_group_by_length",
        )]
    size = spec.data.val_set_size
    if size >= 1 and size != int(size):
        return [_problem(
            ("data", "val_set_size"),
            f"val_set_size {size:g} is read as a row count (it is 1 or more) and must be a whole number: "
            f"use {int(size)}, or a fraction below 1",
            "val_set_size_not_integer",
        )]
    return []


def _qlora_problems(spec: JobSpec) -> list[dict]:
    """QLoRA computes in the precision its 4-bit weights are dequantized to: bf16 or fp16."""
    if spec.method != "qlora" or spec.training.bf16 or spec.training.fp16:
        return []
    return [_problem(
        ("method",),
        "method 'qlora' dequantizes its 4-bit base weights to bf16 or fp16 for each layer's compute: set "
        "training.bf16 (Ampere or newer GPUs) or training.fp16",
        "qlora_needs_half_precision",
    )]


def _lora_problems(spec: JobSpec) -> list[dict]:
    modules = spec.lora.target_modules
    if isinstance(modules, str):
        if modules == "all-linear":
            return []
        msg = (f"target_modules '{modules}' is not understood: use 'all-linear' or a list of module "
               "names such as ['q_proj', 'v_proj']")
    elif not modules:
        msg = "target_modules is empty: use 'all-linear' or name at least one module, e.g. ['q_proj']"
    elif any(not name.strip() for name in modules):
        msg = "target_modules contains an empty name: remove it"
    else:
        return []
    return [_problem(("lora", "target_modules"), msg, "bad_target_modules")]


def spec_problems(spec: JobSpec) -> list[dict]:
    """Problems no single field shows; empty when TrainingArguments and the Trainer accept the spec."""
    t = spec.training
    return [
        *_data_problems(spec),
        *_lora_problems(spec),
        *_qlora_problems(spec),
        *_steps_problems(t),
        *_evaluation_problems(spec),
        *_training_problems(t),
        *_best_metric_problems(spec),
        *_generation_problems(spec),
        *_report_to_problems(t),
        *_strategy_problems(spec),
        *_preference_problems(spec),
    ]


def _preference_problems(spec: JobSpec) -> list[dict]:
    """What TRL's preference trainers (1.x) cannot do, and preference settings without preference training."""
    objective, preference = spec.objective, spec.preference
    if objective == "sft":
        if preference != PreferenceSpec():
            return [_problem(("preference",), "preference settings apply to objective 'dpo' or 'orpo', and this "
                             "job's objective is 'sft': set objective, or leave preference out",
                             "preference_without_objective")]
        return []
    problems = []
    refused = {
        ("data", "packing"): (spec.data.packing, "packing puts several examples in one sequence, but a preference "
                              "pair is one prompt with two answers, which TRL's preference trainers batch "
                              "themselves; set data.packing to false"),
        ("data", "group_by_length"): (spec.data.group_by_length, "group_by_length batches examples by their length, "
                                      "which preference pairs (two answers each) do not have; set "
                                      "data.group_by_length to false"),
        ("evaluation",): (spec.evaluation.enabled, "sample generations and generation metrics are built from "
                          "supervised rows and references, which preference rows do not have; leave the "
                          "evaluation section out"),
    }
    for loc, (on, why) in refused.items():
        if on:
            problems.append(_problem(loc, f"objective '{objective}': {why}", "not_with_preference_training"))
    if objective == "orpo":
        defaults = PreferenceSpec()
        for name in ("loss_type", "reference", "max_prompt_length"):
            if getattr(preference, name) != getattr(defaults, name):
                problems.append(_problem(("preference", name), f"preference.{name} is DPO's (ORPO has no reference "
                                         "model, one loss, and TRL's own prompt handling): leave it out, or use "
                                         "objective 'dpo'", "dpo_only"))
    return problems


def _strategy_problems(spec: JobSpec) -> list[dict]:
    if spec.resources.strategy == "fsdp" and spec.method != "full":
        # Sharding pays for full fine-tuning; a LoRA model's trainable part is small and DDP keeps it whole.
        return [_problem(("resources", "strategy"), "fsdp shards a full fine-tune: set method to 'full', or use "
                         "strategy 'ddp' for LoRA", "fsdp_needs_full")]
    return []
