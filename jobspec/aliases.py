"""The parameter document's names, rewritten to the spelling TrainingArguments takes."""

from typing import Any

from pydantic_core import PydanticCustomError

# document name -> TrainingArguments name
RENAMED = {
    "evaluation_strategy": "eval_strategy",
    "optimizer": "optim",
    "lr_scheduler": "lr_scheduler_type",
    "micro_batch_size": "per_device_train_batch_size",
}


def normalize_training_aliases(data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for alias, name in RENAMED.items():
        if alias in data:
            if name in data:
                raise PydanticCustomError(
                    "alias_conflict", "give either {alias} or {name}, not both",
                    {"alias": alias, "name": name},
                )
            data[name] = data.pop(alias)
    if "warmup_ratio" in data:
        ratio = data.pop("warmup_ratio")
        if "warmup_steps" in data:
            raise PydanticCustomError(
                "warmup_conflict",
                "give either warmup_steps or warmup_ratio, not both (warmup_steps below 1 is a ratio)",
            )
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio < 1:
            raise PydanticCustomError(
                "warmup_ratio_range", "warmup_ratio must be a number from 0 up to (not including) 1"
            )
        data["warmup_steps"] = float(ratio)
    if "save_safetensors" in data:
        if data.pop("save_safetensors") is not True:
            raise PydanticCustomError(
                "safetensors_required",
                "save_safetensors can only be true: transformers 5 always writes checkpoints as "
                "safetensors (no pickle), so there is nothing to turn off",
            )
    return data
