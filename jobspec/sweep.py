"""A hyperparameter sweep request, and its pure logic: parameter paths into the job spec, the grid,
each trial's spec and ASHA's rung steps. The search itself (Optuna) is db/sweep_search.py's."""

import itertools
import math
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from jobspec.model import MAX_STEP, JobSpec, SpecModel

Value = bool | int | float | str
# Paths a sweep may not vary: they name the data, where it runs, the trial's own folder, or what
# the server's checks allow (model code, the Hub, the objective and format the dataset must fit,
# the method): those are checked once, in base.
FIXED_PATHS = frozenset({"dataset_id", "validation_dataset_id", "output_dir", "resume_from_checkpoint",
                         "init_from_job_id", "name", "base_model", "resources.queue", "resources.gpus",
                         "trust_remote_code", "training.hub_model_id", "training.push_to_hub", "objective",
                         "data.format", "method"})
MAX_GRID = 1000


class Parameter(SpecModel):
    """A list of `values` (grid, and a choice for random and tpe), or a range."""

    values: list[Value] | None = Field(None, min_length=1, max_length=MAX_GRID, description="The values to try.")
    low: float | None = Field(None, description="Lower end of the range (with high and distribution).")
    high: float | None = Field(None, description="Upper end of the range, included.")
    distribution: Literal["uniform", "log_uniform", "int"] | None = Field(
        None, description="How a range is sampled: uniform, log_uniform (low > 0) or int.")

    @model_validator(mode="after")
    def _values_or_range(self) -> "Parameter":
        ranged = (self.low, self.high, self.distribution)
        if self.values is not None:
            if any(part is not None for part in ranged):
                raise ValueError("give either values or low, high and distribution, not both")
            return self
        if any(part is None for part in ranged):
            raise ValueError("give values, or all of low, high and distribution")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.distribution == "log_uniform" and self.low <= 0:
            raise ValueError("log_uniform needs low > 0")
        if self.distribution == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("int needs whole numbers for low and high")
        return self


class SweepMetric(SpecModel):
    name: str = Field(min_length=1, max_length=128, description="A metric the trials log: loss, eval_loss, ...")
    goal: Literal["minimize", "maximize"] = Field("minimize", description="Whether lower or higher is better.")


class EarlyStopping(SpecModel):
    """Asynchronous successive halving: at each rung step (grace_steps * reduction_factor^k) a trial
    goes on only if its metric at that step is in the best 1/reduction_factor of the trials that
    reached the rung so far; the others stop (early_stopped)."""

    type: Literal["asha"] = Field("asha", description="The rule: asha.")
    grace_steps: int = Field(ge=1, le=MAX_STEP, description="The first rung: no trial stops before this step.")
    reduction_factor: int = Field(3, ge=2, le=10, description="1/reduction_factor of the trials go on at a rung.")
    max_steps: int | None = Field(None, ge=1, le=MAX_STEP,
                                  description="Each trial's training.max_steps (default the base spec's).")


class SweepRequest(SpecModel):
    name: str | None = Field(None, max_length=255, description="Free-form name of the sweep.")
    base: JobSpec = Field(description="The job spec every trial starts from.")
    parameters: dict[str, Parameter] = Field(
        min_length=1, max_length=20, description="Spec paths (training.learning_rate, lora.r, ...) -> values or a range.")
    method: Literal["grid", "random", "tpe"] = Field("grid", description="grid, random (seeded) or tpe (Optuna).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the random and tpe samplers.")
    max_trials: int | None = Field(None, ge=1, le=MAX_GRID,
                                   description="Trials in all; grid: default (and at most) the grid's size; random and tpe: default 10.")
    max_concurrent_trials: int = Field(1, ge=1, le=100, description="Trials queued or running at once.")
    metric: SweepMetric = Field(description="What the best trial is chosen by.")
    early_stopping: EarlyStopping | None = Field(None, description="Stop poor trials early (asha).")

    def trial_count(self) -> int:
        if self.method == "grid":
            return min(self.max_trials or MAX_GRID, grid_size(self.parameters))
        return self.max_trials or 10

    def trial_max_steps(self) -> int:
        if self.early_stopping and self.early_stopping.max_steps:
            return self.early_stopping.max_steps
        return self.base.training.max_steps

    def rung_steps(self) -> list[int]:
        """ASHA's decision steps, below the trials' last step."""
        if self.early_stopping is None:
            return []
        rungs, step, last = [], self.early_stopping.grace_steps, self.trial_max_steps()
        while 0 < step < last:
            rungs.append(step)
            step *= self.early_stopping.reduction_factor
        return rungs


def _problem(loc: tuple, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": kind}


def path_problem(path: str) -> str | None:
    """Why `path` names no hyperparameter of the job spec (None: it does)."""
    if path in FIXED_PATHS:
        return f"'{path}' is fixed for every trial of a sweep; set it in base"
    model: type[BaseModel] = JobSpec
    parts = path.split(".")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            where = ".".join(parts[:depth]) or "the job spec"
            known = ", ".join(sorted(model.model_fields))
            return f"'{part}' is not a field of {where} (fields: {known})"
        nested = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) else None
        if depth == len(parts) - 1:
            return f"'{path}' is a section, not a value; name one of its fields" if nested else None
        if nested is None:
            return f"'{'.'.join(parts[:depth + 1])}' is a value, it has no fields"
        model = nested
    return None


def integer_path(path: str) -> bool:
    """Whether the spec value at `path` (a valid path) takes whole numbers only (int, not float)."""
    model: type[BaseModel] = JobSpec
    *sections, last = path.split(".")
    for section in sections:
        model = model.model_fields[section].annotation
    annotation = model.model_fields[last].annotation
    kinds = set(getattr(annotation, "__args__", None) or (annotation,)) - {type(None)}
    return int in kinds and float not in kinds


def with_values(spec: dict[str, Any], values: dict[str, Value]) -> dict[str, Any]:
    """A copy of the spec (as JSON) with each path set."""
    spec = {**spec}
    for path, value in values.items():
        *sections, last = path.split(".")
        node = spec
        for section in sections:
            node[section] = {**(node.get(section) or {})}
            node = node[section]
        node[last] = value
    return spec


def grid_size(parameters: dict[str, Parameter]) -> int:
    return math.prod(len(p.values or [None]) for p in parameters.values())


def grid_points(parameters: dict[str, Parameter]) -> list[dict[str, Value]]:
    """Every combination, the last parameter varying fastest, in the order given."""
    names = list(parameters)
    return [dict(zip(names, combination)) for combination in itertools.product(*(parameters[n].values for n in names))]


def trial_spec(request: SweepRequest, values: dict[str, Value], number: int) -> dict[str, Any]:
    """The job spec of trial `number` (0-based) as JSON, not yet validated."""
    base = request.base.model_dump(mode="json", exclude_unset=True)
    fixed: dict[str, Value] = {"name": f"{request.name or 'sweep'} trial {number}"}
    if request.early_stopping and request.early_stopping.max_steps:
        fixed["training.max_steps"] = request.early_stopping.max_steps
    return with_values(base, {**fixed, **values})


def request_problems(request: SweepRequest) -> list[dict[str, Any]]:
    """What is wrong with the request before any trial spec is built (locs within the body)."""
    problems = []
    for path, parameter in request.parameters.items():
        if why := path_problem(path):
            problems.append(_problem(("parameters", path), why, "unknown_path"))
        elif request.method == "grid" and parameter.values is None:
            problems.append(_problem(("parameters", path), "method grid needs a list of values", "grid_needs_values"))
        elif parameter.distribution in ("uniform", "log_uniform") and integer_path(path):
            problems.append(_problem(("parameters", path), f"'{path}' takes whole numbers: give distribution "
                                     f"'int', not '{parameter.distribution}'", "int_distribution_needed"))
    if request.base.output_dir is not None:
        problems.append(_problem(("base", "output_dir"), "leave output_dir out: each trial gets a folder of its own",
                                 "output_dir_per_trial"))
    if request.method == "grid" and not problems and grid_size(request.parameters) > MAX_GRID:
        problems.append(_problem(("parameters",), f"the grid has {grid_size(request.parameters)} combinations, "
                                 f"more than {MAX_GRID}", "grid_too_large"))
    return problems + _rung_problems(request)


def _rung_problems(request: SweepRequest) -> list[dict[str, Any]]:
    """ASHA compares trials by the metric at each rung step: it must be logged at those steps."""
    if request.early_stopping is None:
        return []
    training, rungs = request.base.training, request.rung_steps()
    if request.trial_max_steps() < 1:
        return [_problem(("early_stopping", "max_steps"), "ASHA needs the trials' length in steps: set "
                         "early_stopping.max_steps (or training.max_steps in base)", "no_max_steps")]
    if not rungs:
        return [_problem(("early_stopping", "grace_steps"), f"grace_steps {request.early_stopping.grace_steps} is not "
                         f"below the trials' max_steps ({request.trial_max_steps()}): no trial could stop early",
                         "no_rungs")]
    if request.metric.name.startswith("eval_"):
        every, what = (training.eval_steps if training.eval_strategy == "steps" else None), "training.eval_steps"
    else:
        every, what = (training.logging_steps if training.logging_strategy == "steps" else None), "training.logging_steps"
    if every is None or every < 1 or not float(every).is_integer() or any(step % int(every) for step in rungs):
        return [_problem(("early_stopping", "grace_steps"), f"the rung steps {rungs} must be multiples of {what} "
                         f"(with its strategy 'steps'), so that every trial logs {request.metric.name} at them",
                         "metric_not_at_rungs")]
    return []
