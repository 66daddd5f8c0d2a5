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
    kwargs.update(parallel_arguments(spec))
    if spec.data.group_by_length:
        # transformers 5 replaced group_by_length=True with this sampling strategy.
        kwargs["train_sampling_strategy"] = "group_by_length"
    return kwargs


# FSDP2 (transformers 5's default version), each decoder layer its own unit (the model's
# _no_split_modules), parameters freed again after the forward pass (the least memory; the backward
# gathers them once more), and checkpoints as one full state dict: the same files a single GPU
# writes, so a checkpoint resumes on any number of GPUs and the final model loads anywhere. The
# price is that rank 0 gathers the whole model at each save; SHARDED_STATE_DICT would avoid it for
# models larger than one GPU's memory, at the cost of checkpoints tied to the world size.
FSDP_CONFIG = {
    "version": 2,
    "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    "reshard_after_forward": True,
    "state_dict_type": "FULL_STATE_DICT",
}


def parallel_arguments(spec: JobSpec) -> dict[str, Any]:
    """Data parallelism over resources.gpus processes (torchrun sets the ranks)."""
    if spec.resources.gpus == 1:
        return {}
    if spec.resources.strategy == "fsdp":
        return {"fsdp": True, "fsdp_config": dict(FSDP_CONFIG)}
    # Every parameter that trains gets a gradient at every step (LoRA's frozen base has none to
    # sync): no extra pass over the graph looking for unused ones.
    return {"ddp_find_unused_parameters": False}
