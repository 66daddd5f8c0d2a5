"""The normalized spec as TrainingArguments keyword arguments (names already match)."""

from typing import Any

from jobspec.model import JobSpec


def training_arguments(spec: JobSpec, output_dir: str) -> dict[str, Any]:
    kwargs = spec.training.model_dump()
    kwargs.update(
        output_dir=output_dir,
        # Our datasets are plain token lists; the Trainer must not drop columns it can't see.
        remove_unused_columns=False,
        # Keep every rank-0 log line: the reporting callback records them all.
        disable_tqdm=True,
    )
    return kwargs
