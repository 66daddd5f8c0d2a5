"""split_sizes and estimate without transformers (test_jobspec_estimate_trainer.py checks them
against a real Trainer)."""

import pytest

from jobspec import JobSpec, estimate, split_problems, split_sizes


@pytest.mark.parametrize(
    ("rows", "size", "expected"),
    [(100, 0, (100, 0)), (100, 0.1, (90, 10)), (100, 0.07, (93, 7)), (10, 0.01, (9, 1)), (100, 25, (75, 25)),
     (101, 0.5, (50, 51)), (2, 1, (1, 1))],
)
def test_split_sizes(rows, size, expected):
    assert split_sizes(rows, size) == expected


@pytest.mark.parametrize(("rows", "size"), [(100, 100), (100, 150), (1, 0.5), (0, 0), (100, 2.5)])
def test_split_sizes_refused(rows, size):
    with pytest.raises(ValueError):
        split_sizes(rows, size)


def spec(data=None, resources=None, **training) -> JobSpec:
    return JobSpec(base_model="m", dataset_id=1, data=data or {}, resources=resources or {}, training=training)


def test_split_problems_for_the_api():
    [problem] = split_problems(spec(data={"val_set_size": 500}), 400)
    assert problem["loc"] == ("data", "val_set_size")
    assert "holds out 500 of the dataset's 400 rows" in problem["msg"] and "below 400" in problem["msg"]
    assert split_problems(spec(data={"val_set_size": 500}), 501) == []


def test_estimate_reports_an_unusable_split():
    assert estimate(spec(data={"val_set_size": 10}), 10)["errors"][0]["loc"] == ("data", "val_set_size")


def test_fractional_epochs():
    result = estimate(spec(per_device_train_batch_size=4, gradient_accumulation_steps=3,
                           num_train_epochs=2.5, warmup_steps=0.1), 1000)
    # 250 batches -> ceil(250 / 3) = 84 updates per epoch; ceil(2.5 * 84) = 210
    assert result == {
        "errors": [], "train_rows": 1000, "eval_rows": 0, "effective_batch_size": 12,
        "steps_per_epoch": 84, "total_steps": 210, "epochs": 2.5, "warmup_steps": 21,
        "evaluations": 0, "checkpoints": 1,
    }


def test_max_steps_overrides_epochs():
    result = estimate(spec(per_device_train_batch_size=10, max_steps=25, warmup_steps=5, save_steps=10), 100)
    assert (result["total_steps"], result["epochs"], result["warmup_steps"], result["checkpoints"]) == (25, 2.5, 5, 3)


def test_gpus_split_the_batches():
    result = estimate(spec(resources={"gpus": 4}, per_device_train_batch_size=8, num_train_epochs=1), 1000)
    assert result["effective_batch_size"] == 32
    assert result["steps_per_epoch"] == 32  # ceil(1000 / 32)


def test_evaluations_and_checkpoints():
    result = estimate(spec(
        data={"val_set_size": 0.1}, per_device_train_batch_size=9, num_train_epochs=3,
        eval_strategy="steps", logging_steps=0.1, save_strategy="epoch",
    ), 1000)
    assert (result["train_rows"], result["eval_rows"], result["total_steps"]) == (900, 100, 300)
    assert result["evaluations"] == 10  # eval_steps unset: logging_steps 0.1 -> every 30 steps
    assert result["checkpoints"] == 3
    assert estimate(spec(data={"val_set_size": 0.1}, eval_strategy="epoch", save_strategy="best"),
                    1000)["checkpoints"] is None
