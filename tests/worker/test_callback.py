"""ReportingCallback in process, driven with hand-made Trainer states against a real database."""

import math
import threading
from pathlib import Path

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from db.checkpoints import list_checkpoints
from db.engine import session_scope
from db.jobs import get_job
from db.metrics import list_metrics
from tests.worker.conftest import start_job, write_dataset
from worker.callback import ReportingCallback
from worker.errors import TrainingStopped
from worker.reporting import Reporter


@pytest.fixture
def setup(tmp_path):
    started = start_job(write_dataset([{"text": "a"}], "text"))
    stop = threading.Event()
    callback = ReportingCallback(Reporter(started.job_id, started.run_id, attempt=1), stop=stop)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none")
    return started, callback, args, stop


def state_at(step: int, *, best: str | None = None) -> TrainerState:
    return TrainerState(global_step=step, max_steps=10, epoch=step / 5, num_input_tokens_seen=100 * step,
                        best_model_checkpoint=best)


def stored(job_id: int) -> dict[tuple[int, str], float]:
    with session_scope() as session:
        return {(p.step, p.name): p.value for p in list_metrics(session, job_id)}


def test_metric_points_are_buffered_then_written_together(backend, setup):
    started, callback, args, _ = setup
    control = TrainerControl()
    callback.on_step_end(args, state_at(1), control)  # the first step is reported at once
    callback.on_log(args, state_at(1), control, logs={
        "loss": 2.0, "learning_rate": 1e-3, "epoch": 0.2, "note": "text", "grad_norm": math.nan,
    })
    callback.on_step_end(args, state_at(2), control)  # within a second of the last write
    assert stored(started.job_id) == {}

    callback.on_log(args, state_at(2), control, logs={"eval_loss": 1.5, "epoch": 0.4})
    callback.on_evaluate(args, state_at(2), control, metrics={"eval_loss": 1.5})
    assert stored(started.job_id) == {
        (1, "loss"): 2.0, (1, "learning_rate"): 1e-3, (1, "epoch"): 0.2, (2, "eval_loss"): 1.5, (2, "epoch"): 0.4,
    }

    callback.on_log(args, state_at(2), control, logs={"eval_loss": 1.25})
    callback.on_train_end(args, state_at(2), control)
    assert stored(started.job_id)[(2, "eval_loss")] == 1.25  # a repeated step replaces its value
    with session_scope() as session:
        progress = get_job(session, started.job_id).progress
    assert progress["step"] == 2 and progress["max_steps"] == 10 and progress["percent"] == 20
    assert progress["steps_per_second"] > 0 and progress["eta_seconds"] > 0
    assert progress["tokens_per_second"] == pytest.approx(100 * progress["steps_per_second"])


def test_saves_record_rotation_and_the_best_checkpoint(backend, setup):
    started, callback, args, _ = setup
    output = Path(args.output_dir)
    control = TrainerControl()
    for step, eval_loss in ((2, 2.0), (4, 2.6), (6, 2.4)):
        (output / f"checkpoint-{step}").mkdir(parents=True)
        if step == 6:  # save_total_limit 2 keeps the best (2) and the newest
            (output / "checkpoint-4").rmdir()
        callback.on_log(args, state_at(step), control, logs={"eval_loss": eval_loss})
        callback.on_save(args, state_at(step, best=str(output / "checkpoint-2")), control)

    with session_scope() as session:
        rows = {c.step: c for c in list_checkpoints(session, started.job_id)}
    assert {step: (c.deleted, c.is_best) for step, c in rows.items()} == {
        2: (False, True), 4: (True, False), 6: (False, False),
    }
    assert rows[6].path == str(output / "checkpoint-6")
    assert rows[2].metrics == {"eval_loss": 2.0}


def test_a_stop_request_saves_this_step_then_stops(sqlite_backend, setup):
    started, callback, args, stop = setup
    stop.set()
    control = TrainerControl(should_evaluate=True)
    callback.on_step_end(args, state_at(3), control)
    # the evaluation due at this step still runs: a resumed attempt starts after it
    assert (control.should_save, control.should_training_stop, control.should_evaluate) == (True, True, True)
    best = TrainingArguments(output_dir=args.output_dir, report_to="none", eval_strategy="steps",
                             save_strategy="best", metric_for_best_model="loss")
    control = TrainerControl(should_evaluate=True)
    callback.on_step_end(best, state_at(3), control)  # its outcome would decide the save: skipped
    assert (control.should_save, control.should_training_stop, control.should_evaluate) == (True, True, False)

    during_evaluation = TrainerControl()
    callback.on_evaluate(args, state_at(3), during_evaluation, metrics={})
    assert (during_evaluation.should_save, during_evaluation.should_training_stop) == (True, True)

    (Path(args.output_dir) / "checkpoint-3").mkdir(parents=True)
    with pytest.raises(TrainingStopped):
        callback.on_save(args, state_at(3), control)
    with session_scope() as session:
        [checkpoint] = list_checkpoints(session, started.job_id)
        assert get_job(session, started.job_id).progress["step"] == 3
    assert checkpoint.step == 3 and not checkpoint.deleted


def test_progress_names_its_phase_as_each_begins(sqlite_backend, setup):
    started, callback, args, _ = setup

    def phase() -> tuple[str, float | None]:
        with session_scope() as session:
            progress = get_job(session, started.job_id).progress
        return progress["phase"], progress["phase_progress"]

    callback.reporter.phase("loading_model")
    assert phase() == ("loading_model", None)
    callback.on_train_begin(args, state_at(0), TrainerControl())
    assert phase() == ("training", None)
    control = TrainerControl(should_evaluate=True, should_save=True)
    callback.on_step_end(args, state_at(4), control)
    assert phase() == ("evaluating", None)
    for _ in range(2):
        callback.last_write = -math.inf  # past the write interval
        callback.on_prediction_step(args, state_at(4), control, eval_dataloader=[0, 1, 2, 3])
    assert phase() == ("evaluating", 0.5)
    callback.on_evaluate(args, state_at(4), control, metrics={})
    assert phase() == ("saving", None)
    (Path(args.output_dir) / "checkpoint-4").mkdir(parents=True)
    callback.on_save(args, state_at(4), control)
    assert phase() == ("training", None)
