"""How a spec splits a dataset and how many steps it trains, computed as transformers 5.x Trainer does
(Trainer.set_initial_training_values, TrainerState.compute_steps, TrainingArguments.get_warmup_steps,
DefaultFlowCallback). The worker splits with split_sizes, so both sides agree."""

import math

from jobspec.model import JobSpec
from jobspec.rules import effective_eval_steps


def split_sizes(rows: int, val_set_size: float) -> tuple[int, int]:
    """(train_rows, eval_rows) for a dataset of `rows` rows.

    val_set_size 0 holds nothing out; below 1 it is a fraction, eval_rows = ceil(rows * fraction)
    (at least one row; rounded to 9 decimals first so 100 * 0.07 gives 7, not 8); from 1 it is a
    whole row count. Raises ValueError when no training row would be left or the count is not whole.
    """
    if rows < 1:
        raise ValueError("the dataset has no rows to train on")
    if val_set_size <= 0:
        eval_rows = 0
    elif val_set_size < 1:
        eval_rows = math.ceil(round(rows * val_set_size, 9))
    elif val_set_size == int(val_set_size):
        eval_rows = int(val_set_size)
    else:
        raise ValueError(f"val_set_size {val_set_size:g} is 1 or more, so a row count, and must be whole")
    if eval_rows >= rows:
        raise ValueError(
            f"val_set_size {val_set_size:g} holds out {eval_rows} of the dataset's {rows} rows, leaving "
            f"none to train on: use a smaller fraction or a row count below {rows}"
        )
    return rows - eval_rows, eval_rows


def split_problems(spec: JobSpec, dataset_rows: int) -> list[dict]:
    """spec_problems-shaped problems of this spec on a dataset of `dataset_rows` rows."""
    try:
        split_sizes(dataset_rows, spec.data.val_set_size)
    except ValueError as exc:
        return [{"loc": ("data", "val_set_size"), "msg": str(exc), "type": "val_set_too_large"}]
    return []


def _interval(steps: float, total: int) -> int:
    return math.ceil(total * steps) if steps < 1 else int(steps)


def _occurrences(strategy: str, steps: float, total: int, epochs_run: int) -> int | None:
    """Evaluations or saves in a run: every `steps` steps plus one at the end, or once per epoch."""
    if strategy == "steps":
        return math.ceil(total / _interval(steps, total))
    if strategy == "epoch":
        return epochs_run
    return 0 if strategy == "no" else None  # "best": as many as new best metrics


def estimate(spec: JobSpec, dataset_rows: int) -> dict:
    """Rows, batch sizes and step counts of the run on one or `resources.gpus` data-parallel devices.

    On a dataset the spec cannot use, returns {"errors": [...]} (same shape as spec_problems)."""
    errors = split_problems(spec, dataset_rows)
    if errors:
        return {"errors": errors}
    t, gpus = spec.training, spec.resources.gpus
    train_rows, eval_rows = split_sizes(dataset_rows, spec.data.val_set_size)
    batches_per_epoch = math.ceil(train_rows / (t.per_device_train_batch_size * gpus))
    steps_per_epoch = max(math.ceil(batches_per_epoch / t.gradient_accumulation_steps), 1)
    total = t.max_steps if t.max_steps > 0 else math.ceil(t.num_train_epochs * steps_per_epoch)
    epochs_run = math.ceil(total / steps_per_epoch)
    warmup = int(t.warmup_steps) if t.warmup_steps >= 1 else math.ceil(total * t.warmup_steps)
    packing = (
        {"packing": "steps count batches of packed sequences, several examples each: the step counts "
                    "from num_train_epochs are upper bounds"}
        if spec.data.packing and t.max_steps <= 0 else {}
    )
    return {
        **packing,
        "errors": [],
        "train_rows": train_rows,
        "eval_rows": eval_rows,
        "effective_batch_size": t.per_device_train_batch_size * t.gradient_accumulation_steps * gpus,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total,
        "epochs": total / steps_per_epoch,
        "warmup_steps": warmup,
        "evaluations": _occurrences(t.eval_strategy, effective_eval_steps(t), total, epochs_run),
        "checkpoints": _occurrences(t.save_strategy, t.save_steps, total, epochs_run),
    }
