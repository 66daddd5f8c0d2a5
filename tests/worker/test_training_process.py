"""Successful runs of the real training process: what it leaves in the database and on disk."""

import subprocess
from pathlib import Path

from db.checkpoints import list_checkpoints
from db.engine import session_scope
from db.jobs import get_job
from db.metrics import list_metrics
from db.runs import get_run
from jobspec.estimate import estimate
from jobspec.model import JobSpec
from tests.worker.conftest import (
    DEMO_ROWS, REPO, TRAINING_TIMEOUT_S, install_tiny_model, output_of, process_env, run_training,
    start_job, training_command, write_dataset,
)

CHECKPOINTING_JOB = {
    "data": {"cutoff_len": 128, "val_set_size": 0.1, "train_on_inputs": False},
    "training": {
        "max_steps": 12, "per_device_train_batch_size": 4, "learning_rate": 3e-3, "optim": "adamw_torch",
        "logging_steps": 2, "eval_strategy": "steps", "eval_steps": 3, "save_steps": 3,
        "save_total_limit": 2, "load_best_model_at_end": True, "metric_for_best_model": "loss",
    },
}


def points(job_id: int, name: str) -> list[tuple[int, float]]:
    with session_scope() as session:
        return [(point.step, point.value) for point in list_metrics(session, job_id, names=[name])]


def test_lora_job_records_metrics_checkpoints_and_result(backend):
    install_tiny_model()
    started = start_job(write_dataset(DEMO_ROWS, "alpaca"), **CHECKPOINTING_JOB)

    process = run_training(backend, started.run_id)

    assert process.returncode == 0, output_of(process)
    with session_scope() as session:
        job = get_job(session, started.job_id)
        run_error = get_run(session, started.run_id).error
        checkpoints = list_checkpoints(session, started.job_id)
    assert run_error is None
    result, progress = job.result, job.progress
    final = Path(result["final_model_path"])
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {p.name for p in final.iterdir()}
    assert result["global_step"] == 12
    assert {"train_runtime", "train_loss", "eval_loss"} <= set(result["metrics"])
    assert progress["step"] == progress["max_steps"] == 12
    assert progress["percent"] == 100 and progress["eta_seconds"] == 0 and progress["attempt"] == 1
    assert progress["tokens_per_second"] > 0 and progress["steps_per_second"] > 0
    # On CPU nothing is measured on a GPU; the estimate for the tiny llama is there to compare.
    assert result["peak_gpu_memory_bytes"] is None and result["memory_estimate_error"] is None
    assert result["memory_estimate_bytes"] > 0
    startup = result["startup"]
    phases = [startup[f"{phase}_s"] for phase in ("imports", "data", "model", "trainer", "first_step")]
    assert all(seconds is not None and seconds >= 0 for seconds in phases), startup
    assert sum(phases) <= result["runtime_s"]

    assert [step for step, _ in points(started.job_id, "loss")] == [2, 4, 6, 8, 10, 12]
    eval_loss = dict(points(started.job_id, "eval_loss"))
    assert sorted(eval_loss) == [3, 6, 9, 12]

    assert [c.step for c in checkpoints] == [3, 6, 9, 12]
    on_disk = {int(p.name.removeprefix("checkpoint-")) for p in final.parent.glob("checkpoint-*")}
    assert {c.step for c in checkpoints if not c.deleted} == on_disk
    assert len(on_disk) == 2
    assert all(Path(c.path).is_dir() != c.deleted for c in checkpoints)
    assert all(c.metrics["eval_loss"] == eval_loss[c.step] for c in checkpoints)

    best_step = min(eval_loss, key=eval_loss.get)
    [best] = [c for c in checkpoints if c.is_best]
    assert best.step == best_step and not best.deleted
    assert best.path == result["best_checkpoint"]
    assert result["best_metric"] == eval_loss[best_step]


def test_full_fine_tuning_for_a_fractional_epoch(sqlite_backend):
    """Half an epoch with gradient accumulation: max_steps as transformers computes it."""
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from jobspec.training_args import training_arguments

    model_dir = install_tiny_model()
    fields = {
        "method": "full",
        "data": {"cutoff_len": 96, "val_set_size": 0.1},
        "training": {
            "num_train_epochs": 0.5, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2,
            "learning_rate": 1e-3, "optim": "adamw_torch", "logging_steps": 1, "save_strategy": "no",
        },
    }
    started = start_job(write_dataset(DEMO_ROWS, "alpaca"), **fields)

    process = run_training(sqlite_backend, started.run_id)

    assert process.returncode == 0, output_of(process)
    spec = JobSpec.model_validate({"base_model": "tiny", "dataset_id": 1, **fields})
    train_rows = estimate(spec, len(DEMO_ROWS))["train_rows"]
    args = TrainingArguments(**training_arguments(spec, str(sqlite_backend.data_dir / "unused")))
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                      train_dataset=list(range(train_rows)))
    transformers_max_steps = trainer.set_initial_training_values(args, trainer.get_train_dataloader())[-1]
    with session_scope() as session:
        job = get_job(session, started.job_id)
    assert job.progress["max_steps"] == transformers_max_steps == estimate(spec, len(DEMO_ROWS))["total_steps"]
    assert job.result["global_step"] == transformers_max_steps
    assert len(points(started.job_id, "loss")) == transformers_max_steps
    final = Path(job.result["final_model_path"])
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in final.iterdir()}


def test_identical_jobs_give_bit_identical_losses(sqlite_backend):
    """The seed is set before the LoRA adapters are initialised, and it drives dropout and order."""
    install_tiny_model()
    dataset_id = write_dataset(DEMO_ROWS, "alpaca")
    fields = {
        "lora": {"dropout": 0.1},
        "training": {"max_steps": 6, "per_device_train_batch_size": 4, "logging_steps": 1,
                     "learning_rate": 3e-3, "optim": "adamw_torch", "save_strategy": "no", "seed": 7},
    }
    jobs = [start_job(dataset_id, **fields) for _ in range(2)]

    # Side by side, one thread each: two multi-threaded processes on few cores slow each other down.
    env = process_env(sqlite_backend) | {"OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(training_command(job.run_id), env=env, cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for job in jobs
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=TRAINING_TIMEOUT_S)
        assert process.returncode == 0, stderr[-6000:]

    first, second = (points(job.job_id, "loss") for job in jobs)
    assert len(first) == 6
    assert first == second
    assert points(jobs[0].job_id, "grad_norm") == points(jobs[1].job_id, "grad_norm")


def test_a_job_can_start_from_an_earlier_jobs_checkpoint(sqlite_backend):
    """spec.resume_from_checkpoint: the new job continues the earlier one's optimizer, schedule,
    data order and step count, so with a constant schedule it repeats the earlier job's losses."""
    install_tiny_model()
    dataset_id = write_dataset(DEMO_ROWS, "alpaca")
    training = {"per_device_train_batch_size": 4, "logging_steps": 1, "learning_rate": 1e-3,
                "optim": "adamw_torch", "lr_scheduler_type": "constant", "save_steps": 2}
    earlier = start_job(dataset_id, training={**training, "max_steps": 4})
    assert run_training(sqlite_backend, earlier.run_id).returncode == 0
    later = start_job(dataset_id, training={**training, "max_steps": 6},
                      resume_from_checkpoint={"job_id": earlier.job_id, "step": 2})

    process = run_training(sqlite_backend, later.run_id)

    assert process.returncode == 0, output_of(process)
    earlier_losses, later_losses = dict(points(earlier.job_id, "loss")), dict(points(later.job_id, "loss"))
    with session_scope() as session:
        assert get_job(session, later.job_id).result["global_step"] == 6
    assert sorted(later_losses) == [3, 4, 5, 6]
    assert later_losses[3] == earlier_losses[3] and later_losses[4] == earlier_losses[4]


def test_report_to_tensorboard_writes_event_files_in_the_jobs_folder(sqlite_backend):
    install_tiny_model()
    started = start_job(write_dataset(DEMO_ROWS, "alpaca"), training={
        "max_steps": 2, "per_device_train_batch_size": 2, "logging_steps": 1, "save_strategy": "no",
        "report_to": "tensorboard"})

    process = run_training(sqlite_backend, started.run_id)

    assert process.returncode == 0, output_of(process)
    with session_scope() as session:
        output = Path(get_job(session, started.job_id).result["final_model_path"]).parent
    assert list(output.glob("runs/*/events.out.tfevents.*"))
