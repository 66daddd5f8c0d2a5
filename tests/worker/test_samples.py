"""Sample generations and generation metrics (the spec's evaluation section) in the real training
process: samples per evaluation step and at the end, eval_* generation metrics as metric points,
metric_for_best_model on a generation metric, and training untouched by generating."""

from db.checkpoints import list_checkpoints
from db.engine import session_scope
from db.events import list_events
from db.jobs import get_job
from db.samples import list_samples
from tests.worker.conftest import DEMO_ROWS, install_tiny_model, output_of, run_training, start_job, write_dataset
from tests.worker.test_training_process import points

# One answer for every row: the model learns it within a few steps, so the metrics move.
ROWS = [{**row, "output": ANSWER} for row in DEMO_ROWS for ANSWER in ["the answer is always lima"]]
PROMPTS = ["Write the word in capital letters.", [{"role": "user", "content": "What is the capital of Peru?"}]]
TRAINING = {
    "max_steps": 7, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8, "learning_rate": 3e-3,
    "optim": "adamw_torch", "logging_steps": 1, "eval_strategy": "steps", "eval_steps": 3, "save_steps": 3,
}
SAMPLING_JOB = {
    "data": {"cutoff_len": 64, "val_set_size": 8, "train_on_inputs": False},
    "method": "full",
    "training": {**TRAINING, "load_best_model_at_end": True, "metric_for_best_model": "eval_rouge_l"},
    "evaluation": {"sample_prompts": PROMPTS, "samples_from_validation": 2,
                   "generation_metrics": ["exact_match", "rouge_l", "bleu"], "max_new_tokens": 8},
}


def test_samples_and_generation_metrics_per_evaluation(sqlite_backend):
    install_tiny_model()
    dataset_id = write_dataset(ROWS, "alpaca")
    started = start_job(dataset_id, **SAMPLING_JOB)

    process = run_training(sqlite_backend, started.run_id)

    assert process.returncode == 0, output_of(process)
    with session_scope() as session:
        samples = list_samples(session, started.job_id)
        events = [e for e in list_events(session, started.job_id, after=None, limit=1000) if e.type == "samples.generated"]
        checkpoints = list_checkpoints(session, started.job_id)
        result = get_job(session, started.job_id).result
    # Evaluations at steps 3 and 6, and at the end of training (step 7).
    assert sorted({s.step for s in samples}) == [3, 6, 7]
    for step in (3, 6, 7):
        at_step = [s for s in samples if s.step == step]
        assert [s.prompt_index for s in at_step] == [0, 1, 2, 3]
        assert [s.source for s in at_step] == ["prompt", "prompt", "validation", "validation"]
        assert [s.prompt for s in at_step[:2]] == PROMPTS
        assert at_step[0].reference is None and all(s.reference for s in at_step[2:])
    assert [e.data["step"] for e in events] == [3, 6, 7]
    assert all(e.data["samples"] == 4 and e.data["seconds"] >= 0 and e.data["skipped"] == 0 for e in events)
    assert set(events[0].data["metrics"]) == {"exact_match", "rouge_l", "bleu"}
    assert not any(e.data["final"] for e in events)  # the last step was evaluated: no extra round

    rouge = dict(points(started.job_id, "eval_rouge_l"))
    assert sorted(rouge) == [3, 6, 7]
    for name in ("eval_exact_match", "eval_bleu", "eval_generation_seconds", "eval_loss"):
        assert sorted(dict(points(started.job_id, name))) == [3, 6, 7], name
    assert all(0 <= value <= 1 for value in rouge.values())
    assert {e.data["step"]: e.data["metrics"]["rouge_l"] for e in events} == rouge
    # The checkpoints list them, and the best one has the highest eval_rouge_l (the first on a tie).
    assert all(c.metrics["eval_rouge_l"] == rouge[c.step] for c in checkpoints if c.step in rouge)
    best_step = max(sorted(rouge), key=lambda step: rouge[step])
    [best] = [c for c in checkpoints if c.is_best]
    assert best.step == best_step and result["best_metric"] == rouge[best_step]

    # The same job without the evaluation section trains bit-identically: generating draws no
    # random numbers and changes nothing the training sees.
    plain = start_job(dataset_id, method="full", data=SAMPLING_JOB["data"], training=TRAINING)
    process = run_training(sqlite_backend, plain.run_id)
    assert process.returncode == 0, output_of(process)
    for name in ("loss", "eval_loss"):
        assert points(plain.job_id, name) == points(started.job_id, name), name


def test_samples_at_the_end_without_evaluation(sqlite_backend):
    """Sample prompts need no validation set: without evaluations, one round at the end."""
    install_tiny_model()
    started = start_job(write_dataset(DEMO_ROWS, "alpaca"), data={"cutoff_len": 64},
                        training={"max_steps": 2, "per_device_train_batch_size": 4, "optim": "adamw_torch",
                                  "logging_steps": 1, "save_strategy": "no"},
                        evaluation={"sample_prompts": PROMPTS, "max_new_tokens": 4})

    process = run_training(sqlite_backend, started.run_id)

    assert process.returncode == 0, output_of(process)
    with session_scope() as session:
        samples = list_samples(session, started.job_id)
        [event] = [e for e in list_events(session, started.job_id, after=None, limit=1000) if e.type == "samples.generated"]
    assert [(s.step, s.prompt_index, s.source) for s in samples] == [(2, 0, "prompt"), (2, 1, "prompt")]
    assert event.data["final"] and event.data["metrics"] == {} and event.data["samples"] == 2
    assert points(started.job_id, "eval_generation_seconds") == []
