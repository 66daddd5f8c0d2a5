"""Training fields a resumed job may change: the length of the run and how often it evaluates, logs
and saves. Anything else (batch sizes, optimizer, schedule, precision, seed...) would make the
checkpoint's optimizer/scheduler state and data order not match the run that continues from it."""

from typing import Any

from pydantic import ValidationError

from jobspec.aliases import RENAMED
from jobspec.model import JobSpec
from jobspec.rules import spec_problems

RESUME_OVERRIDABLE_FIELDS = frozenset({
    "num_train_epochs", "max_steps", "eval_strategy", "eval_steps", "save_strategy", "save_steps",
    "logging_strategy", "logging_steps", "save_total_limit",
})


class ResumeOverrideError(ValueError):
    """Overrides refused; `problems` has spec_problems' shape with loc ("overrides", name)."""

    def __init__(self, problems: list[dict]):
        super().__init__("; ".join(f"{p['loc'][-1]}: {p['msg']}" for p in problems))
        self.problems = problems


def apply_resume_overrides(spec: JobSpec, overrides: dict[str, Any]) -> JobSpec:
    """The spec with `overrides` (training field names or their document aliases) applied and
    re-validated. Raises ResumeOverrideError for a field that cannot change on resume, a bad value,
    or a combination spec_problems refuses."""
    given: dict[str, str] = {}  # canonical name -> name as given
    problems = []
    for name in overrides:
        canonical = RENAMED.get(name, name)
        if canonical in given:
            problems.append({
                "loc": ("overrides", name),
                "msg": f"{name} and {given[canonical]} are the same field; give only one",
                "type": "alias_conflict",
            })
        elif canonical in RESUME_OVERRIDABLE_FIELDS:
            given[canonical] = name
        else:
            problems.append({
                "loc": ("overrides", name),
                "msg": f"{name} cannot change when resuming; only "
                       + ", ".join(sorted(RESUME_OVERRIDABLE_FIELDS)) + " can",
                "type": "not_overridable",
            })
    if problems:
        raise ResumeOverrideError(problems)

    def at_override(loc: tuple) -> tuple:
        if loc[:1] == ("training",) and len(loc) > 1 and loc[1] in given:
            return ("overrides", given[loc[1]], *loc[2:])
        return loc

    data = spec.model_dump()
    data["training"].update({canonical: overrides[name] for canonical, name in given.items()})
    try:
        resumed = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise ResumeOverrideError([
            {"loc": at_override(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
        ]) from None
    problems = [{**p, "loc": at_override(p["loc"])} for p in spec_problems(resumed)]
    if problems:
        raise ResumeOverrideError(problems)
    return resumed
