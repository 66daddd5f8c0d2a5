"""The training process of one run: `python -m worker.train --run-id N`, started in a fresh
interpreter by the supervisor (worker/supervisor.py).

Exit codes (worker.errors):
- EXIT_SUCCEEDED (0): the final model is in <output_dir>/final and the job's result is written.
- EXIT_FAILED (1): the run's error {code, message, advice?} is written, the traceback is on stderr.
- EXIT_STOPPED (3): a stop was asked (SIGUSR1, or SIGTERM) and the checkpoint of the step reached
  is recorded; no final model is saved.

A job on several GPUs runs this module as each of torchrun's ranks (worker/ranks.py): rank 0 alone
writes to the database (progress, metrics, checkpoints, the result); any rank that fails writes
the run's error.
"""

# ruff: noqa: E402 (the stop handlers go in before the heavy imports)
import argparse
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from worker import holds, ranks, warm  # light: no torch

# SIGUSR1 (cancel) and SIGTERM (shutdown) only set this flag: the callback then checkpoints the
# current step and stops, never in the middle of an optimizer step, a save or a DB write. The
# handlers go in before the imports below, which take seconds: by default SIGUSR1 would kill.
# The supervisor starts this process with both signals blocked (warm.hold_stop_signals), so one
# sent before the handlers are in waits, pending, and is delivered to them here.
PROCESS_STARTED = time.monotonic()
STOP_REQUESTED = threading.Event()

if __name__ == "__main__":
    AS_RANK = ranks.launched_by_torchrun()
    holds.hold("start")
    # A rank leaves SIGTERM to its default: torchrun stops the other ranks with it when one fails.
    for _signum in (signal.SIGUSR1,) if AS_RANK else (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(_signum, lambda *_: STOP_REQUESTED.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, warm.STOP_SIGNALS)
    holds.hold("imports")

import torch
from transformers import Trainer, TrainingArguments, set_seed

from jobspec.model import JobSpec
from jobspec.training_args import training_arguments
from traindock.paths import checkpoint_dir, checkpoint_steps_on_disk
from traindock.settings import get_settings
from traindock.storage import get_store
from worker.callback import ReportingCallback, numeric_values
from worker.data import PaddingCollator
from worker.errors import (
    EXIT_DATABASE_UNAVAILABLE, EXIT_FAILED, EXIT_STOPPED, EXIT_SUCCEEDED, BadDataset, BadModel, Bf16Unsupported,
    TrainingFailure, TrainingStopped, classify, is_disk_full,
)
from worker.model import (
    load_model, load_tokenizer, model_source, prepare_base, prepare_for_training, remote_code_allowed,
    require_qlora_support,
)
from worker.packing import PackedCollator, keep_examples_apart
from worker.memory_check import measured_against_estimate
from worker.reporting import (
    DatabaseUnavailable, Reporter, load_assignment, report_error, usable_checkpoint_location,
)
from worker.samples import SampleGenerator, evaluation_rows
from worker.startup import StartupClock
from worker.throughput import ThroughputTrainer
from worker.token_cache import tokenized_datasets, verify_dataset

STARTUP = StartupClock(PROCESS_STARTED)
STARTUP.mark("imports")


@dataclass(frozen=True)
class RunContext:
    run_id: int
    job_id: int
    attempt: int
    spec: JobSpec
    dataset_path: Path
    dataset_sha256: str
    dataset_format: str
    output_dir: Path
    resume_step: int | None  # this job's checkpoint the attempt continues from
    resume_from: Path | None  # the checkpoint folder the attempt continues from
    eval_source: tuple[Path, str] | None = None  # validation_dataset_id's file and format
    init_from: Path | None = None  # an earlier job's final model (init_from_job_id)


def load_context(run_id: int) -> RunContext:
    assignment = load_assignment(run_id)
    spec = assignment.spec
    if assignment.dataset_location is None:
        raise BadDataset(f"dataset {spec.dataset_id} was deleted")
    if spec.validation_dataset_id and assignment.validation_location is None:
        raise BadDataset(f"validation dataset {spec.validation_dataset_id} was deleted")
    store = get_store()
    if assignment.init_from is not None:
        store.fetch_dir(store.location_of(assignment.init_from))
    if assignment.init_from is not None and not assignment.init_from.is_dir():
        raise BadModel(f"job {spec.init_from_job_id}'s final model is gone, so this job cannot start from it")
    return RunContext(
        run_id=assignment.run_id,
        job_id=assignment.job_id,
        attempt=assignment.attempt,
        spec=spec,
        dataset_path=local_dataset(assignment.dataset_location, assignment.dataset_sha256),
        dataset_sha256=assignment.dataset_sha256,
        dataset_format=assignment.dataset_format if spec.data.format == "auto" else spec.data.format,
        output_dir=assignment.output_dir,
        resume_step=assignment.resume_step,
        resume_from=checkpoint_to_resume(assignment.resume_step, spec, assignment.output_dir),
        eval_source=(store.fetch_file(assignment.validation_location), assignment.validation_format)
        if assignment.validation_location else None,
        init_from=assignment.init_from,
    )


def local_dataset(location: str, sha256: str) -> Path:
    """The dataset's file on this machine: from the store into a cache named by its content, which
    later jobs on the same dataset reuse (worker/token_cache.py checks the content)."""
    store = get_store()
    return store.fetch_file(location, store.root / "cache" / "datasets" / f"{sha256}.jsonl", reuse=True)


def checkpoint_to_resume(resume_step: int | None, spec: JobSpec, output_dir: Path) -> Path | None:
    """This job's checkpoint the attempt resumes (set on the run), else the earlier job's
    checkpoint the spec starts from, else None; fetched from the store when this machine has
    not got it, or not as the store has it (another worker saved it)."""
    store = get_store()
    if resume_step is not None:
        # Fetched again when the copy here differs from the store's (a checkpoint of a timeline
        # since replaced on another machine): never resumed from old weights.
        folder = checkpoint_dir(output_dir, resume_step)
        store.fetch_dir(store.location_of(folder))
        return folder
    earlier = spec.resume_from_checkpoint
    if earlier is None:
        return None
    location = usable_checkpoint_location(earlier.job_id, earlier.step)
    if location is None:
        at_step = f" at step {earlier.step}" if earlier.step else ""
        raise TrainingFailure(f"job {earlier.job_id} has no usable checkpoint{at_step} to start from")
    return store.fetch_dir(location)


def build_training_arguments(spec: JobSpec, output_dir: Path) -> TrainingArguments:
    """Built before the model is loaded, so that arguments the Trainer refuses fail fast."""
    if spec.training.bf16 and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise Bf16Unsupported(f"bf16 was requested, but the GPU {torch.cuda.get_device_name()} does not support it")
    if spec.resources.strategy == "fsdp" and spec.resources.gpus > 1 and not torch.cuda.is_available():
        raise TrainingFailure("strategy fsdp needs NVIDIA GPUs: on CPU (gloo) this worker runs ddp only; set "
                              "resources.strategy to 'ddp', or run the job on a GPU worker")
    # Non-padding tokens of the training batches, counted by the Trainer over all processes and
    # kept in checkpoints: what tokens_per_second is computed from.
    kwargs = {**training_arguments(spec, str(output_dir)), "include_num_input_tokens_seen": "non_padding"}
    if spec.resources.gpus > 1 and not torch.cuda.is_available():
        kwargs["use_cpu"] = True  # accelerate joins CPU ranks (gloo) only when told they are CPU ranks
    try:
        args = TrainingArguments(**kwargs) if spec.objective == "sft" else preference_module().preference_arguments(
            spec, kwargs)
    except ValueError as exc:
        if spec.training.bf16 and "bf16" in str(exc):
            raise Bf16Unsupported(f"bf16 was requested, but this machine does not support it: {exc}") from exc
        raise
    ranks_launched = ranks.world_size()
    if args.world_size != ranks_launched:  # never N independent copies writing one output folder
        raise TrainingFailure(f"torchrun started {ranks_launched} processes but the Trainer sees a world of "
                              f"{args.world_size}")
    return args


def last_eval_metrics(log_history: list[dict]) -> dict:
    for entry in reversed(log_history):
        if any(name.startswith("eval_") for name in entry):
            return {name: value for name, value in entry.items() if name.startswith("eval_")}
    return {}


def is_main_process() -> bool:
    """Rank 0 of a job on several GPUs, or the one training process."""
    return ranks.rank() == 0


def stop_if_requested(stop: threading.Event) -> None:
    # Ranks agree on a stop at a step's end (worker/callback.py); one rank alone must not leave.
    if stop.is_set() and ranks.world_size() == 1:
        raise TrainingStopped("stopped on request before training began")


def build_trainer(
    context: RunContext, args: TrainingArguments, callback: ReportingCallback, stop: threading.Event
) -> Trainer:
    spec = context.spec
    reporter = callback.reporter
    main = is_main_process()
    if main:
        reporter.phase("preparing_data")
    source = model_source(spec.base_model, get_settings().effective_model_roots)
    tokenizer = load_tokenizer(source, spec.base_model, trust_remote_code=remote_code_allowed(spec))
    if spec.objective != "sft":
        return build_preference_trainer(context, args, callback, stop, tokenizer, source)
    holds.hold("tokenizing")
    train_set, eval_set, cache_file, cached = tokenized_datasets(
        context.dataset_path, context.dataset_sha256, context.dataset_format, tokenizer, spec.data,
        spec.training.seed, get_settings().root / "cache" / "tokenized", eval_source=context.eval_source,
    )
    if cache_file is not None:
        print(f"tokenized examples {'loaded from' if cached else 'written to'} the cache: {cache_file}", file=sys.stderr)
    STARTUP.mark("data")
    stop_if_requested(stop)
    if main:
        reporter.phase("loading_model")
    # Before the model is built: LoRA's initial adapter weights come from this RNG.
    set_seed(spec.training.seed)
    full_from = context.init_from if spec.method == "full" else None
    holds.hold("loading_model")
    model = load_model(str(full_from) if full_from else source, spec.base_model, spec)
    adapter = context.init_from if spec.method != "full" else None
    model = prepare_for_training(model, spec, adapter=adapter)
    STARTUP.mark("model")
    collator = PackedCollator if spec.data.packing else PaddingCollator
    trainer = ThroughputTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[callback],
    )
    if spec.data.packing:
        keep_examples_apart(trainer.model, len(tokenizer))
    callback.token_counts = trainer.token_counts
    if spec.evaluation.enabled and ranks.world_size() == 1:  # the spec rules refuse it on several GPUs
        trainer.sample_generator = sample_generator(context, tokenizer, reporter)
    return trainer


def preference_module():
    """worker/preference.py imports TRL (seconds): only preference jobs pay for it."""
    from worker import preference

    return preference


def build_preference_trainer(
    context: RunContext, args: TrainingArguments, callback: ReportingCallback, stop: threading.Event, tokenizer,
    source: str,
) -> Trainer:
    """build_trainer's steps for objective dpo or orpo: TRL's trainer tokenizes the pairs itself."""
    spec = context.spec
    preference = preference_module()
    holds.hold("tokenizing")
    verify_dataset(context.dataset_path, context.dataset_sha256)  # as tokenized_datasets does for sft
    train_set, eval_set = preference.preference_datasets(
        context.dataset_path, context.dataset_format, tokenizer, spec.data.val_set_size, spec.training.seed,
        context.eval_source,
    )
    STARTUP.mark("data")
    stop_if_requested(stop)
    if is_main_process():
        callback.reporter.phase("loading_model")
    set_seed(spec.training.seed)
    full_from = context.init_from if spec.method == "full" else None
    holds.hold("loading_model")
    model = load_model(str(full_from) if full_from else source, spec.base_model, spec)
    if spec.method != "full":  # a new adapter is TRL's to add (worker/preference.py says why)
        adapter = context.init_from
        model = prepare_for_training(model, spec, adapter=adapter) if adapter else prepare_base(model, spec)
    STARTUP.mark("model")
    trainer = preference.build_preference_trainer(spec, model, args, train_set, eval_set, tokenizer, callback)
    callback.token_counts = trainer.token_counts
    return trainer


def sample_generator(context: RunContext, tokenizer, reporter: Reporter) -> SampleGenerator:
    """The evaluation section's generations, from the evaluation rows build_datasets split off."""
    spec = context.spec
    wants_rows = spec.evaluation.samples_from_validation or spec.evaluation.generation_metrics
    rows, rows_format = evaluation_rows(
        context.dataset_path, context.dataset_format, spec.data.val_set_size, spec.training.seed, context.eval_source,
    ) if wants_rows else ([], context.dataset_format)
    return SampleGenerator(
        spec.evaluation, tokenizer, context.dataset_format, rows, rows_format, cutoff_len=spec.data.cutoff_len,
        batch_size=spec.training.per_device_eval_batch_size, reporter=reporter,
    )


def discard_later_timeline(context: RunContext, reporter: Reporter) -> None:
    """Resuming this job from a step: what came after it belongs to a timeline being replaced.
    Its metric points are forgotten (the new attempt logs its own). Its checkpoints, left in
    place, would make rotation (which keeps the highest steps) delete the new attempt's fresh
    ones instead; so they move to superseded/attempt-<n>/ and are listed as deleted."""
    resume_step = context.resume_step
    later = sorted(step for step in checkpoint_steps_on_disk(context.output_dir) if step > resume_step)
    aside = context.output_dir / "superseded" / f"attempt-{context.attempt}"
    if later:
        aside.mkdir(parents=True, exist_ok=True)
    for step in later:
        checkpoint_dir(context.output_dir, step).rename(checkpoint_dir(aside, step))
    reporter.timeline_replaced(resume_step, later, aside, checkpoint_steps_on_disk(context.output_dir))


def discard_partial_checkpoint(context: RunContext, step: int, saved_steps: set[int]) -> None:
    """A save that ran out of space leaves a half-written folder: remove it (freeing the space), so
    that only complete checkpoints stay beside the earlier ones."""
    if step in saved_steps or step == context.resume_step:
        return
    shutil.rmtree(checkpoint_dir(context.output_dir, step), ignore_errors=True)


def run_training(context: RunContext, stop: threading.Event) -> None:
    stop_if_requested(stop)  # asked while the process started, or (a spare) before it read its run
    if (threads := get_settings().training_threads) is not None:
        torch.set_num_threads(threads)
    if context.spec.method == "qlora":
        require_qlora_support()
    args = build_training_arguments(context.spec, context.output_dir)
    if context.resume_from is not None and not context.resume_from.is_dir():
        raise TrainingFailure(f"cannot resume: the checkpoint folder {context.resume_from} is missing")
    reporter = Reporter(context.job_id, context.run_id, context.attempt)
    main = is_main_process()
    if context.resume_step is not None:
        with args.main_process_first(local=False, desc="setting later checkpoints aside"):
            if main:
                discard_later_timeline(context, reporter)
    callback = ReportingCallback(reporter, stop)
    trainer = build_trainer(context, args, callback, stop)
    stop_if_requested(stop)
    resume = str(context.resume_from) if context.resume_from is not None else None
    try:
        output = trainer.train(resume_from_checkpoint=resume)
    except TrainingStopped:
        if main:
            callback.uploads.wait_quietly()
        raise
    except Exception as exc:
        if main:
            # The checkpoint being uploaded is recorded before the process (and its upload thread) ends.
            callback.uploads.wait_quietly()
            callback.flush_quietly()
            if is_disk_full(exc):
                discard_partial_checkpoint(context, trainer.state.global_step, callback.saved_steps)
        raise
    if callback.stop_agreed() and trainer.state.global_step < trainer.state.max_steps:
        # Stopped during an evaluation whose save the Trainer then skipped (save_strategy "best").
        raise TrainingStopped(f"stopped on request at step {trainer.state.global_step}")
    # A stop from here on comes after the last step: the job finishes (succeeded) as it would have.
    holds.hold("recording")

    final_dir = context.output_dir / "final"
    # Every rank takes part (FSDP gathers the shards); the main process writes.
    trainer.save_model(str(final_dir))  # the adapter only, for LoRA; and the tokenizer
    if not main:
        return
    final_location = callback.uploads.put_final(final_dir)
    result = {
        "final_model_path": final_location,
        "storage_wait_s": callback.uploads.waited_s,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_metric": numeric_values({"best": trainer.state.best_metric}).get("best"),
        "global_step": output.global_step,
        "num_input_tokens_seen": trainer.state.num_input_tokens_seen,
        **{key: callback.progress(trainer.state, final=True)[key]
           for key in ("real_tokens_per_second", "padding_efficiency")},
        "metrics": numeric_values({**output.metrics, **last_eval_metrics(trainer.state.log_history)}),
        "runtime_s": time.monotonic() - PROCESS_STARTED,
        **measured_against_estimate(context.spec),
        "startup": startup_split(callback),
    }
    reporter.result(result)


def restart_clocks() -> None:
    """A spare's job starts when it is handed over: the imports were done before it was
    submitted. A stop already received stays: only the supervisor that handed the run over
    signals a spare (or a shutdown of the whole worker, which hands no run over), and its stop may
    come while the spare is still importing, before it has read the run."""
    global PROCESS_STARTED, STARTUP
    PROCESS_STARTED = time.monotonic()
    STARTUP = StartupClock(PROCESS_STARTED, warm=True)
    STARTUP.mark("imports")


def startup_split(callback: ReportingCallback) -> dict:
    if callback.train_began is not None:
        STARTUP.mark("trainer", callback.train_began)
    if callback.first_step is not None:
        STARTUP.mark("first_step", callback.first_step[0])
    return STARTUP.split()


def show_in_title(context: RunContext) -> None:
    """`ps` and top show which run this process trains (a spare's command line reads `--warm`)."""
    try:
        from setproctitle import setproctitle
    except ImportError:  # the worker extra installs it; without it only the title stays as it was
        return
    setproctitle(f"traindock-train job {context.job_id} run {context.run_id} attempt {context.attempt}")


def record_failure(run_id: int, exc: BaseException) -> None:
    traceback.print_exception(exc, file=sys.stderr)
    error = classify(exc)
    print(f"run {run_id} failed: {error['code']}: {error['message']}", file=sys.stderr)
    try:
        report_error(run_id, error)
    except Exception:
        print("could not write the run's error:", file=sys.stderr)
        traceback.print_exc()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.train", description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", type=int)
    parser.add_argument("--warm", action="store_true", help="a spare started before its job (worker/warm.py): "
                        "the run id comes on stdin")
    parser.add_argument("--attempt-log", type=Path, help="a rank under torchrun: the attempt's launcher log, "
                        "beside which it writes its own log and exit code")
    args = parser.parse_args(argv)
    if args.warm:
        get_store()  # the object store's client (boto3) is made ahead too
        handed = warm.wait_for_run()
        if handed is None:
            return 0
        holds.hold("handed_over")
        restart_clocks()
        return train(handed[0])
    if args.run_id is None:
        parser.error("--run-id is required")
    if args.attempt_log is None:
        return train(args.run_id)
    ranks.become_rank(args.attempt_log)
    code = train(args.run_id)
    ranks.record_exit(args.attempt_log, code)
    return code


def train(run_id: int) -> int:
    try:
        context = load_context(run_id)
        show_in_title(context)
        run_training(context, STOP_REQUESTED)
    except TrainingStopped as stopped:
        print(stopped, file=sys.stderr)
        return EXIT_STOPPED
    except DatabaseUnavailable as unavailable:
        # Nothing can be recorded; the supervisor hands the job back (database_unavailable).
        print(unavailable, file=sys.stderr)
        return EXIT_DATABASE_UNAVAILABLE
    except Exception as exc:
        if ranks.launched_by_torchrun() and ranks.is_peer_lost(exc):
            # Another rank died first; its exit (or its death) says why, not this one's.
            traceback.print_exception(exc, file=sys.stderr)
            return ranks.EXIT_PEER_LOST
        record_failure(run_id, exc)
        return EXIT_FAILED
    return EXIT_SUCCEEDED


if __name__ == "__main__":
    sys.exit(main())
