"""The parameter document's names, rewritten to the spelling TrainingArguments takes.

Problems with an alias are reported at the alias the caller wrote (loc ("training", "warmup_ratio")),
not at the whole section, so they come back as ordinary field errors.
"""

from typing import Any

from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticKnownError, ValidationError

# document name -> TrainingArguments name
RENAMED = {
    "evaluation_strategy": "eval_strategy",
    "optimizer": "optim",
    "lr_scheduler": "lr_scheduler_type",
    "micro_batch_size": "per_device_train_batch_size",
}
# Accepted in a training section besides the field names; warmup_ratio becomes warmup_steps.
TRAINING_ALIASES = (*RENAMED, "warmup_ratio", "save_safetensors")


def _error(loc: str, value: Any, kind: str, msg: str, ctx: dict | None = None) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, msg, ctx), loc=(loc,), input=value)


def normalize_training_aliases(data: Any) -> tuple[Any, list[InitErrorDetails], dict[str, str]]:
    """Rename the document's names in a training section.

    Returns (data with canonical names only, errors located at the alias, canonical -> alias used).
    An alias in conflict is dropped from the data, so the rest still validates normally.
    """
    if not isinstance(data, dict):
        return data, [], {}
    data = dict(data)
    errors: list[InitErrorDetails] = []
    used: dict[str, str] = {}
    for alias, name in RENAMED.items():
        if alias not in data:
            continue
        value = data.pop(alias)
        if name in data:
            errors.append(_error(
                alias, value, "alias_conflict",
                "{alias} is another name for {name}; give only one of them (preferably {name})",
                {"alias": alias, "name": name},
            ))
        else:
            data[name] = value
            used[name] = alias
    if "warmup_ratio" in data:
        ratio = data.pop("warmup_ratio")
        if "warmup_steps" in data:
            errors.append(_error(
                "warmup_ratio", ratio, "warmup_conflict",
                "give either warmup_steps or warmup_ratio, not both: warmup_steps below 1 is already a "
                "ratio of all training steps (warmup_ratio 0.1 is warmup_steps 0.1)",
            ))
        elif not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 <= ratio < 1:
            errors.append(_error(
                "warmup_ratio", ratio, "warmup_ratio_range",
                "warmup_ratio must be a number from 0 up to (not including) 1; for a number of steps "
                "use warmup_steps",
            ))
        else:
            data["warmup_steps"] = float(ratio)
            used["warmup_steps"] = "warmup_ratio"
    if "save_safetensors" in data:
        value = data.pop("save_safetensors")
        if value is not True:
            errors.append(_error(
                "save_safetensors", value, "safetensors_required",
                "save_safetensors can only be true (or left out): transformers 5 always writes "
                "checkpoints as safetensors, never pickle, so there is nothing to turn off",
            ))
    return data, errors, used


def _details(err: dict, rename: dict[str, str]) -> InitErrorDetails:
    loc = err["loc"]
    if loc and loc[0] in rename:
        loc = (rename[loc[0]], *loc[1:])
    try:
        PydanticKnownError(err["type"], err.get("ctx"))  # a built-in error type, rebuilt with its ctx
    except (KeyError, TypeError, ValueError):
        return InitErrorDetails(type=PydanticCustomError(err["type"], err["msg"]), loc=loc, input=err["input"])
    details = InitErrorDetails(type=err["type"], loc=loc, input=err["input"])
    if "ctx" in err:
        details["ctx"] = err["ctx"]
    return details


def validate_with_aliases(title: str, data: Any, handler: Any) -> Any:
    """Body of a wrap model validator: normalize, validate, and report every error at the name
    the caller wrote (an alias's value that fails validation is reported at the alias)."""
    data, alias_errors, used = normalize_training_aliases(data)
    if not alias_errors and not used:
        return handler(data)
    try:
        result = handler(data)
        other: list[InitErrorDetails] = []
    except ValidationError as exc:
        other = [_details(err, used) for err in exc.errors()]
    if alias_errors or other:
        raise ValidationError.from_exception_data(title, alias_errors + other)
    return result
