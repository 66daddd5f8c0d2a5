"""The search of a sweep, with Optuna's ask-and-tell: the parameters of the next trial (grid,
seeded random, TPE) and ASHA's rung decisions (SuccessiveHalvingPruner).

Optuna's study lives in memory and is rebuilt from the service's own rows for each decision (the
trials' jobs, metric points and the sweep's `trial.rung` events), so the database stays the one
record and any process can decide (README, "Sweeps", says why not Optuna's RDB storage)."""

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.pruners import SuccessiveHalvingPruner
from optuna.samplers import RandomSampler, TPESampler
from optuna.trial import TrialState, create_trial

from jobspec.sweep import Parameter, SweepRequest, grid_points

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class Outcome:
    """A trial as the search sees it: its parameters, and its final value once it ended."""

    params: dict[str, Any]
    value: float | None = None
    finished: bool = False
    rungs: dict[int, float] = field(default_factory=dict)  # rung index -> value recorded there


def distribution(parameter: Parameter) -> BaseDistribution:
    if parameter.values is not None:
        return CategoricalDistribution(parameter.values)
    if parameter.distribution == "int":
        return IntDistribution(int(parameter.low), int(parameter.high))
    return FloatDistribution(parameter.low, parameter.high, log=parameter.distribution == "log_uniform")


def _distributions(request: SweepRequest) -> dict[str, BaseDistribution]:
    return {path: distribution(parameter) for path, parameter in request.parameters.items()}


def _direction(request: SweepRequest) -> str:
    return request.metric.goal


def planned_trials(request: SweepRequest) -> list[dict[str, Any]] | None:
    """Every trial's parameters, known before any trial runs (grid and random), or None (tpe asks
    as results come in). Random draws from a RandomSampler seeded with the sweep's seed: the same
    request gives the same trials."""
    if request.method == "grid":
        return grid_points(request.parameters)[:request.trial_count()]
    if request.method == "tpe":
        return None
    study = optuna.create_study(sampler=RandomSampler(seed=request.seed), direction=_direction(request))
    distributions = _distributions(request)
    return [study.ask(distributions).params for _ in range(request.trial_count())]


def ask_tpe(request: SweepRequest, trials: list[Outcome]) -> dict[str, Any]:
    """The next trial's parameters from TPE, given the earlier trials (finished ones with their
    value; the rest as running). Seeded with the sweep's seed and the trial's number."""
    distributions = _distributions(request)
    study = optuna.create_study(sampler=TPESampler(seed=request.seed + len(trials)), direction=_direction(request))
    for trial in trials:
        if trial.finished and trial.value is not None:
            study.add_trial(create_trial(params=trial.params, distributions=distributions, value=trial.value))
        else:
            state = TrialState.FAIL if trial.finished else TrialState.RUNNING
            study.add_trial(create_trial(params=trial.params, distributions=distributions, state=state))
    return study.ask(distributions).params


def promoted(request: SweepRequest, others: list[dict[int, float]], own: dict[int, float], rung: int, value: float) -> bool:
    """ASHA at `rung`: whether a trial whose metric at the rung step is `value` goes on. `others`:
    the rung values the other trials recorded; `own`: this trial's at the earlier rungs."""
    es = request.early_stopping
    pruner = SuccessiveHalvingPruner(min_resource=es.grace_steps, reduction_factor=es.reduction_factor,
                                     min_early_stopping_rate=0, bootstrap_count=0)
    study = optuna.create_study(direction=_direction(request), pruner=pruner)
    for rungs in others:
        study.add_trial(create_trial(state=TrialState.PRUNED, value=None, params={}, distributions={},
                                     system_attrs={f"completed_rung_{r}": v for r, v in rungs.items()}))
    step = request.rung_steps()[rung]
    study.add_trial(create_trial(state=TrialState.RUNNING, params={}, distributions={}, intermediate_values={step: value},
                                 system_attrs={f"completed_rung_{r}": v for r, v in own.items() if r < rung}))
    trial = study.get_trials(deepcopy=False)[-1]
    return not pruner.prune(study, trial)
