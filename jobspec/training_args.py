"""The normalized spec as TrainingArguments keyword arguments (names already match)."""

from typing import Any

from jobspec.model import JobSpec


def training_arguments(spec: JobSpec, output_dir: str) -> dict[str, Any]:
    kwargs = spec.training.model_dump()
    # transformers 5 renamed it; the old name still works but warns (args.gradient_checkpointing mirrors it).
    kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")
    if kwargs["save_strategy"] == "best" and kwargs["metric_for_best_model"] is None:
        # TrainingArguments defaults the metric only for load_best_model_at_end; the Trainer then
        # refuses save_strategy "best" without one. The spec documents "default loss" for both.
        kwargs["metric_for_best_model"] = "loss"
    kwargs.update(
        output_dir=output_dir,
        # Our datasets are plain token lists; the Trainer must not drop columns it can't see.
        remove_unused_columns=False,
        # Keep every rank-0 log line: the reporting callback records them all.
        disable_tqdm=True,
    )
    if spec.data.group_by_length:
        # transformers 5 replaced group_by_length=True with this sampling strategy.
        kwargs["train_sampling_strategy"] = "group_by_length"
    return kwargs
