"""Overrides allowed when resuming, and everything else refused at ("overrides", name)."""

import pytest

from jobspec import RESUME_OVERRIDABLE_FIELDS, JobSpec, ResumeOverrideError, apply_resume_overrides


@pytest.fixture
def spec() -> JobSpec:
    return JobSpec(base_model="m", dataset_id=1, data={"val_set_size": 0.1},
                   training={"eval_strategy": "steps", "eval_steps": 100, "save_steps": 500,
                             "load_best_model_at_end": True})


def refused(spec, overrides) -> dict[tuple, dict]:
    with pytest.raises(ResumeOverrideError) as caught:
        apply_resume_overrides(spec, overrides)
    assert isinstance(caught.value, ValueError)
    return {p["loc"]: p for p in caught.value.problems}


def test_overridable_fields():
    assert RESUME_OVERRIDABLE_FIELDS == {
        "num_train_epochs", "max_steps", "eval_strategy", "eval_steps", "save_strategy", "save_steps",
        "logging_strategy", "logging_steps", "save_total_limit",
    }


def test_overrides_applied(spec):
    resumed = apply_resume_overrides(spec, {"num_train_epochs": 5, "save_total_limit": 2, "save_steps": 1000})
    assert (resumed.training.num_train_epochs, resumed.training.save_total_limit,
            resumed.training.save_steps) == (5, 2, 1000)
    assert resumed.training.learning_rate == spec.training.learning_rate
    assert spec.training.num_train_epochs == 3  # the original is untouched


def test_document_alias_accepted(spec):
    resumed = apply_resume_overrides(spec, {"evaluation_strategy": "epoch", "save_strategy": "epoch"})
    assert resumed.training.eval_strategy == "epoch"


def test_other_fields_refused(spec):
    found = refused(spec, {"learning_rate": 1e-4, "optimizer": "sgd", "max_steps": 10})
    assert set(found) == {("overrides", "learning_rate"), ("overrides", "optimizer")}
    assert "learning_rate cannot change when resuming" in found[("overrides", "learning_rate")]["msg"]


def test_alias_and_name_together(spec):
    found = refused(spec, {"eval_strategy": "epoch", "evaluation_strategy": "epoch"})
    assert found[("overrides", "evaluation_strategy")]["type"] == "alias_conflict"


def test_bad_value_at_the_override(spec):
    found = refused(spec, {"evaluation_strategy": "sometimes", "save_steps": -1})
    assert set(found) == {("overrides", "evaluation_strategy"), ("overrides", "save_steps")}


def test_result_is_revalidated(spec):
    # A problem with a field that was not overridden keeps its place in the spec.
    found = refused(spec, {"eval_steps": 300})
    assert "500 is not a multiple of 300" in found[("training", "save_steps")]["msg"]
    found = refused(spec, {"save_steps": 250})
    assert found[("overrides", "save_steps")]["type"] == "save_steps_not_multiple"
    found = refused(spec, {"max_steps": 0})
    assert ("overrides", "max_steps") in found
