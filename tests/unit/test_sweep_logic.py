"""The pure logic of sweeps: parameter paths, the grid, trial specs, rung steps, the request's own
checks, seeded sampling and ASHA's rule."""

import pytest
from pydantic import ValidationError

from db.sweep_search import Outcome, ask_tpe, planned_trials, promoted
from jobspec import JobSpec
from jobspec.sweep import SweepRequest, grid_points, path_problem, request_problems, trial_spec, with_values

BASE = {"base_model": "tiny", "dataset_id": 1, "training": {"max_steps": 27, "logging_steps": 1}}


def request(**fields) -> SweepRequest:
    return SweepRequest.model_validate({"base": BASE, "metric": {"name": "loss"},
                                        "parameters": {"training.learning_rate": {"values": [1e-4, 1e-3]}}, **fields})


@pytest.mark.parametrize(("path", "words"), [
    ("training.learning_rate", None),
    ("lora.r", None),
    ("lora.dropout", None),
    ("training.lr", "'lr' is not a field of training"),
    ("nope", "'nope' is not a field of the job spec"),
    ("lora", "a section, not a value"),
    ("lora.r.x", "'lora.r' is a value"),
    ("output_dir", "fixed for every trial"),
    # What the server's checks allow: checked once, in base.
    ("trust_remote_code", "fixed for every trial"),
    ("training.hub_model_id", "fixed for every trial"),
    ("training.push_to_hub", "fixed for every trial"),
    ("objective", "fixed for every trial"),
    ("data.format", "fixed for every trial"),
    ("method", "fixed for every trial"),
])
def test_paths_name_a_value_of_the_job_spec(path, words):
    problem = path_problem(path)
    assert problem is None if words is None else words in problem


def test_the_grid_is_every_combination_in_order():
    parameters = request(parameters={"training.learning_rate": {"values": [1, 2]}, "lora.r": {"values": [4, 8, 16]}}).parameters
    points = grid_points(parameters)
    assert len(points) == 6 and points[0] == {"training.learning_rate": 1, "lora.r": 4}
    assert points[1] == {"training.learning_rate": 1, "lora.r": 8} and points[-1] == {"training.learning_rate": 2, "lora.r": 16}
    assert request(parameters=parameters, max_trials=4).trial_count() == 4


def test_a_trial_spec_is_the_base_with_its_values_and_the_asha_length():
    sweep = request(name="s", early_stopping={"grace_steps": 3, "max_steps": 9})
    spec = JobSpec.model_validate(trial_spec(sweep, {"training.learning_rate": 0.01, "lora.r": 4}, 2))
    assert (spec.name, spec.training.learning_rate, spec.training.max_steps, spec.lora.r) == ("s trial 2", 0.01, 9, 4)
    assert spec.lora.alpha == 16 and BASE["training"] == {"max_steps": 27, "logging_steps": 1}  # untouched
    assert with_values({"a": {"b": 1}}, {"a.c": 2}) == {"a": {"b": 1, "c": 2}}


def test_rung_steps_are_grace_times_powers_of_the_factor_below_the_end():
    assert request(early_stopping={"grace_steps": 1}).rung_steps() == [1, 3, 9]
    assert request(early_stopping={"grace_steps": 2, "reduction_factor": 2, "max_steps": 16}).rung_steps() == [2, 4, 8]
    assert request().rung_steps() == []


@pytest.mark.parametrize(("fields", "loc", "words"), [
    ({"parameters": {"lora.r": {"low": 1, "high": 8, "distribution": "int"}}}, ["parameters", "lora.r"], "needs a list"),
    ({"base": {**BASE, "output_dir": "mine"}}, ["base", "output_dir"], "each trial gets a folder"),
    ({"method": "tpe", "parameters": {"lora.r": {"low": 4, "high": 32, "distribution": "uniform"}}},
     ["parameters", "lora.r"], "give distribution 'int', not 'uniform'"),
    ({"method": "random", "parameters": {"data.cutoff_len": {"low": 64, "high": 512, "distribution": "log_uniform"}}},
     ["parameters", "data.cutoff_len"], "takes whole numbers"),
    ({"early_stopping": {"grace_steps": 27}}, ["early_stopping", "grace_steps"], "no trial could stop early"),
    ({"early_stopping": {"grace_steps": 2}, "base": {**BASE, "training": {"logging_steps": 1}}},
     ["early_stopping", "max_steps"], "set early_stopping.max_steps"),
    ({"early_stopping": {"grace_steps": 2}, "metric": {"name": "eval_loss"}}, ["early_stopping", "grace_steps"],
     "multiples of training.eval_steps"),
])
def test_the_request_is_checked_before_any_trial(fields, loc, words):
    [problem] = request_problems(request(**fields))
    assert problem["loc"] == loc and words in problem["msg"]


@pytest.mark.parametrize("parameter", [
    {"values": [1], "low": 1, "high": 2, "distribution": "uniform"},
    {"low": 2, "high": 1, "distribution": "uniform"},
    {"low": 0, "high": 1, "distribution": "log_uniform"},
    {"low": 0.5, "high": 4, "distribution": "int"},
    {"low": 1, "high": 2},
])
def test_a_parameter_is_values_or_a_sound_range(parameter):
    with pytest.raises(ValidationError):
        request(parameters={"lora.r": parameter})


def test_random_sampling_is_seeded_and_within_the_ranges():
    fields = {"method": "random", "max_trials": 5,
              "parameters": {"training.learning_rate": {"low": 1e-5, "high": 1e-2, "distribution": "log_uniform"},
                             "lora.r": {"low": 2, "high": 16, "distribution": "int"}, "lora.dropout": {"values": [0, 0.1]}}}
    first = planned_trials(request(seed=1, **fields))
    assert first == planned_trials(request(seed=1, **fields)) != planned_trials(request(seed=2, **fields))
    assert all(1e-5 <= t["training.learning_rate"] <= 1e-2 and 2 <= t["lora.r"] <= 16 for t in first)
    assert len({t["training.learning_rate"] for t in first}) == 5


def test_tpe_asks_within_the_range_and_is_seeded():
    sweep = request(method="tpe", max_trials=4, parameters={"lora.r": {"low": 2, "high": 16, "distribution": "int"}})
    done = [Outcome({"lora.r": 4}, 1.0, True), Outcome({"lora.r": 8}, None, False)]
    assert ask_tpe(sweep, done) == ask_tpe(sweep, done) and 2 <= ask_tpe(sweep, done)["lora.r"] <= 16


def test_asha_keeps_the_best_fraction_at_a_rung():
    sweep = request(early_stopping={"grace_steps": 1, "reduction_factor": 3})
    assert promoted(sweep, [], {}, 0, 5.0)  # the first to report goes on
    assert not promoted(sweep, [{0: 1.0}], {}, 0, 2.0)  # below 2 * factor reports: only a new best
    six = [{0: float(v)} for v in range(1, 6)]
    assert promoted(sweep, six, {}, 0, 1.5) and not promoted(sweep, six, {}, 0, 2.5)  # best 6 // 3 = 2 of 6
    assert not promoted(sweep, [{0: 1.0, 1: 1.0}], {0: 1.0}, 1, 3.0)  # rung 1 compares rung-1 values
    maximize = request(metric={"name": "acc", "goal": "maximize"}, early_stopping={"grace_steps": 1})
    assert promoted(maximize, [{0: 1.0}], {}, 0, 2.0) and not promoted(maximize, [{0: 3.0}], {}, 0, 2.0)


def test_only_whole_number_values_need_the_int_distribution():
    ranges = {"training.learning_rate": {"low": 1e-5, "high": 1e-2, "distribution": "log_uniform"},
              "training.logging_steps": {"low": 1, "high": 4, "distribution": "uniform"},  # float: a fraction or steps
              "lora.dropout": {"low": 0, "high": 0.3, "distribution": "uniform"},
              "lora.r": {"low": 4, "high": 32, "distribution": "int"}}
    assert request_problems(request(method="tpe", parameters=ranges)) == []
