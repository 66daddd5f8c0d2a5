"""The training process of one run: `python -m worker.train --run-id N`, started in a fresh
interpreter by the supervisor (worker/supervisor.py).

Exit codes (worker.errors):
- EXIT_SUCCEEDED (0): the final model is in <output_dir>/final and the job's result is written.
- EXIT_FAILED (1): the run's error {code, message, advice?} is written, the traceback is on stderr.
- EXIT_STOPPED (3): a stop was asked (SIGUSR1, or SIGTERM) and the checkpoint of the step reached
  is recorded; no final model is saved.
"""

import argparse
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments, set_seed

from db.datasets import get_dataset
from db.engine import session_scope
from db.jobs import get_job, set_result
from db.runs import get_run, set_run_error
from jobspec.model import JobSpec
from jobspec.training_args import training_arguments
from traindock.paths import job_output_dir
from traindock.settings import get_settings
from worker.callback import ReportingCallback
from worker.data import PaddingCollator, build_datasets
from worker.errors import (
    EXIT_FAILED, EXIT_STOPPED, EXIT_SUCCEEDED, BadDataset, Bf16Unsupported, TrainingFailure,
    TrainingStopped, classify,
)
from worker.model import load_model, load_tokenizer, model_source, prepare_for_training


@dataclass(frozen=True)
class RunContext:
    run_id: int
    job_id: int
    attempt: int
    resume_step: int | None
    spec: JobSpec
    dataset_path: Path
    dataset_format: str


def load_context(run_id: int) -> RunContext:
    with session_scope() as session:
        run = get_run(session, run_id)
        if run is None:
            raise LookupError(f"run {run_id} does not exist")
        job = get_job(session, run.job_id)
        spec = JobSpec.model_validate(job.spec)
        dataset = get_dataset(session, job.dataset_id) if job.dataset_id is not None else None
        if dataset is None:
            raise BadDataset(f"dataset {spec.dataset_id} was deleted")
        return RunContext(
            run_id=run.id,
            job_id=job.id,
            attempt=run.attempt,
            resume_step=run.resume_step,
            spec=spec,
            dataset_path=Path(dataset.path),
            dataset_format=dataset.format if spec.data.format == "auto" else spec.data.format,
        )


def build_training_arguments(spec: JobSpec, output_dir: Path) -> TrainingArguments:
    """Built before the model is loaded, so that arguments the Trainer refuses fail fast."""
    if spec.training.bf16 and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise Bf16Unsupported(f"bf16 was requested, but the GPU {torch.cuda.get_device_name()} does not support it")
    # Non-padding tokens of the training batches, counted by the Trainer over all processes and
    # kept in checkpoints: what tokens_per_second is computed from.
    kwargs = {**training_arguments(spec, str(output_dir)), "include_num_input_tokens_seen": "non_padding"}
    try:
        return TrainingArguments(**kwargs)
    except ValueError as exc:
        if spec.training.bf16 and "bf16" in str(exc):
            raise Bf16Unsupported(f"bf16 was requested, but this machine does not support it: {exc}") from exc
        raise


def resume_checkpoint(context: RunContext, output_dir: Path) -> str | None:
    if context.resume_step is None:
        return None
    checkpoint = output_dir / f"checkpoint-{context.resume_step}"
    if not checkpoint.is_dir():
        raise TrainingFailure(f"cannot resume: the checkpoint folder {checkpoint} is missing")
    return str(checkpoint)


def last_eval_metrics(log_history: list[dict]) -> dict:
    for entry in reversed(log_history):
        if any(name.startswith("eval_") for name in entry):
            return {name: value for name, value in entry.items() if name.startswith("eval_")}
    return {}


def run_training(context: RunContext, stop: threading.Event, started: float) -> None:
    settings = get_settings()
    spec = context.spec
    output_dir = job_output_dir(settings.jobs_dir, spec.output_dir, context.job_id)
    args = build_training_arguments(spec, output_dir)
    resume_from = resume_checkpoint(context, output_dir)
    source = model_source(spec.base_model, settings.effective_model_roots)
    tokenizer = load_tokenizer(source, spec.base_model)
    train_set, eval_set = build_datasets(
        context.dataset_path, context.dataset_format, tokenizer, spec.data, spec.training.seed
    )
    # Before the model is built: LoRA's initial adapter weights come from this RNG.
    set_seed(spec.training.seed)
    model = prepare_for_training(load_model(source, spec.base_model, spec), spec)
    callback = ReportingCallback(context.job_id, context.run_id, context.attempt, stop)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=PaddingCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[callback],
    )
    if stop.is_set():
        raise TrainingStopped("stopped on request before training began")
    try:
        output = trainer.train(resume_from_checkpoint=resume_from)
    except TrainingStopped:
        raise
    except Exception:
        callback.flush_quietly()
        raise
    if stop.is_set() and trainer.state.global_step < trainer.state.max_steps:
        # Stopped during an evaluation whose save the Trainer then skipped (save_strategy "best").
        raise TrainingStopped(f"stopped on request at step {trainer.state.global_step}")

    final_dir = output_dir / "final"
    trainer.save_model(str(final_dir))  # the adapter only, for LoRA; and the tokenizer
    result = {
        "final_model_path": str(final_dir),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_metric": trainer.state.best_metric,
        "global_step": output.global_step,
        "metrics": {**output.metrics, **last_eval_metrics(trainer.state.log_history)},
        "runtime_s": time.monotonic() - started,
    }
    with session_scope() as session:
        set_result(session, context.job_id, result)


def install_stop_handlers() -> threading.Event:
    """SIGUSR1 (cancel) and SIGTERM (shutdown) only set a flag: the callback then checkpoints the
    current step and stops, never in the middle of an optimizer step, a save or a DB write."""
    stop = threading.Event()
    for signum in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def record_failure(run_id: int, exc: BaseException) -> None:
    traceback.print_exception(exc, file=sys.stderr)
    error = classify(exc)
    print(f"run {run_id} failed: {error['code']}: {error['message']}", file=sys.stderr)
    try:
        with session_scope() as session:
            set_run_error(session, run_id, error)
    except Exception:
        print("could not write the run's error:", file=sys.stderr)
        traceback.print_exc()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.train", description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", type=int, required=True)
    run_id = parser.parse_args(argv).run_id
    started = time.monotonic()
    stop = install_stop_handlers()
    try:
        run_training(load_context(run_id), stop, started)
    except TrainingStopped as stopped:
        print(stopped, file=sys.stderr)
        return EXIT_STOPPED
    except Exception as exc:
        record_failure(run_id, exc)
        return EXIT_FAILED
    return EXIT_SUCCEEDED


if __name__ == "__main__":
    sys.exit(main())
