"""The spec's packing and group_by_length: documented, exclusive, and passed to TrainingArguments."""

import transformers

from jobspec import JobSpec, estimate, job_spec_json_schema, spec_problems, training_arguments


def spec(**data) -> JobSpec:
    return JobSpec(base_model="m", dataset_id=1, data=data)


def test_schema_documents_both():
    fields = job_spec_json_schema()["$defs"]["DataSpec"]["properties"]
    assert fields["packing"]["default"] is False and "no attention or loss across" in fields["packing"]["description"]
    assert fields["group_by_length"]["default"] is False and fields["group_by_length"]["description"]


def test_packing_and_group_by_length_exclude_each_other():
    [problem] = spec_problems(spec(packing=True, group_by_length=True))
    assert problem["loc"] == ("data", "group_by_length") and problem["type"] == "packing_with_group_by_length"
    assert spec_problems(spec(packing=True)) == spec_problems(spec(group_by_length=True)) == []


def test_group_by_length_is_transformers_5_sampling_strategy(tmp_path):
    kwargs = training_arguments(spec(group_by_length=True), str(tmp_path))
    assert transformers.TrainingArguments(**kwargs).train_sampling_strategy == "group_by_length"
    assert "train_sampling_strategy" not in training_arguments(spec(packing=True), str(tmp_path))


def test_estimates_say_packed_step_counts_are_upper_bounds():
    assert "upper bounds" in estimate(spec(packing=True), 100)["packing"]
    assert "packing" not in estimate(spec(), 100)
