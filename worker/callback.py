"""Reports a Trainer's progress, metrics and checkpoints through worker/reporting.py, keyed by
global step, from the main process only (after Determined's DetCallback). Also turns a stop request into a
checkpoint of the current step followed by TrainingStopped.

On several GPUs (torchrun), a stop reaches each rank by itself, maybe in different steps; saving
is collective, so at each step's end the ranks sum their stop flags (one all_reduce, which also sums
their real and processed token counts for the padding efficiency) and all stop at the same step.

Writes are batched: metric points wait in memory and go out with a progress update at most about
once a second, and at every evaluation, save and the end of training, each in one short
transaction. The progress names its phase (training, evaluating with its own progress, saving),
written as each begins, so a long evaluation or save never looks like a frozen job. While the
database does not answer, points stay in memory and go with the next write: none is lost. A save
that the free disk space visibly cannot hold is refused before it starts (DiskFull), so earlier
checkpoints stay intact."""

import math
import shutil
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from traindock.paths import checkpoint_dir, checkpoint_step, checkpoint_steps_on_disk
from worker.checkpoint_upload import CheckpointUploads
from worker.errors import DiskFull, TrainingStopped
from worker.holds import hold
from worker.reporting import MetricPoints, ReportDeferred, Reporter

WRITE_INTERVAL_S = 1.0
SAVE_MARGIN = 1.1  # optimizer state and metadata vary a little from save to save


def numeric_values(logs: dict) -> dict[str, float]:
    """The numbers of a log line; NaN and infinities are left out (SQLite cannot store NaN, and
    neither is valid JSON for the API)."""
    return {
        name: float(value) for name, value in logs.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def refuse_save_that_cannot_fit(output_dir: Path, step: int) -> None:
    """A checkpoint is about as large as the last one; if the free space visibly cannot hold it,
    fail now rather than leave a half-written folder (rotation deletes old ones only after)."""
    steps = checkpoint_steps_on_disk(output_dir)
    if not steps:
        return
    needed = SAVE_MARGIN * folder_bytes(checkpoint_dir(output_dir, max(steps)))
    free = shutil.disk_usage(output_dir).free
    if needed > free:
        raise DiskFull(f"not saving the checkpoint of step {step}: it needs about {needed / 2**20:.1f} MiB "
                       f"and {free / 2**20:.1f} MiB are free in {output_dir}")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class ReportingCallback(TrainerCallback):
    def __init__(self, reporter: Reporter, stop: threading.Event):
        self.reporter = reporter
        self.stop = stop
        self.phase, self.phase_progress, self.phase_started_at = "training", None, utc_now_iso()
        self.eval_batches = 0
        self.pending: dict[int, tuple[float | None, dict[str, float]]] = {}  # step -> (epoch, values)
        self.last_write = -math.inf
        # Rates are measured from the end of this run's first step, so start-up and a resumed
        # run's earlier steps do not count; evaluations and saves after it do (wall time).
        self.first_step: tuple[float, int, int] | None = None  # (time, global step, tokens seen)
        self.token_counts = None  # the trainer's TokenCounts, when it counts real and padded tokens
        self.first_real_tokens = 0
        self.saved_steps: set[int] = set()  # checkpoints this attempt completed and recorded
        self.train_began: float | None = None  # monotonic, for the start-up split (worker/startup.py)
        self.agreed_stop = False  # several ranks: the stop all of them act on, agreed at a step's end
        self.world_tokens: tuple[int, int] | None = None  # several ranks: (real, processed) of all of them
        self.uploads = CheckpointUploads()
        # Steps this attempt has seen on its disk: with an object store, only their rotation is its
        # to record (the others are in the store, from earlier attempts on other machines).
        self.seen_on_disk: set[int] = set()

    # ---- Trainer events -------------------------------------------------------------------

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_began = time.monotonic()
        hold("first_step")
        if self.stop.is_set() and not distributed():
            # Asked while the Trainer was setting up: nothing to checkpoint beyond what the attempt
            # started from. (Several ranks agree on a stop at a step's end.)
            raise TrainingStopped(f"stopped on request before the first step (at step {state.global_step})")
        if state.is_world_process_zero:
            self.enter("training", state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if distributed():
            self.agree_across_ranks()
        if self.stop_agreed():
            # The checkpoint of this step is what a resume continues from. An evaluation due now
            # still runs first (the resumed attempt starts after this step and would never log it),
            # except with save_strategy "best", where its outcome would decide, and could cancel,
            # the save.
            if args.save_strategy == "best":
                control.should_evaluate = False
            self._stop_after_save(control)
        if not state.is_world_process_zero:
            return
        if control.should_save:
            self.uploads.wait()  # the Trainer's rotation must not delete a folder still being uploaded
            refuse_save_that_cannot_fit(Path(args.output_dir), state.global_step)
        now = time.monotonic()
        if self.first_step is None:
            self.first_step = (now, state.global_step, state.num_input_tokens_seen)
            self.first_real_tokens = self.real_tokens()
        # DefaultFlowCallback, which runs first, has decided what follows this step.
        if control.should_evaluate:
            self.enter("evaluating", state)
        elif control.should_save:
            self.enter("saving", state)
        elif now - self.last_write >= WRITE_INTERVAL_S:
            self.write(state)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not state.is_world_process_zero or self.phase != "evaluating":
            return
        hold("evaluating")
        self.eval_batches += 1
        if eval_dataloader is not None and len(eval_dataloader):
            self.phase_progress = round(min(self.eval_batches / len(eval_dataloader), 1.0), 4)
        if time.monotonic() - self.last_write >= WRITE_INTERVAL_S:
            self.write(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        epoch, values = self.pending.get(state.global_step, (None, {}))
        values.update(numeric_values(logs))
        self.pending[state.global_step] = (state.epoch if state.epoch is not None else epoch, values)
        if self.reporter.at_rung(state.global_step, values):
            # A sweep's rung (ASHA): decided on this step's metric before the next step, and a
            # stopped trial takes the stop path of a cancel.
            self.write(state)
            if self.reporter.stopped_at_rung():
                self.stop.set()
                if not distributed():
                    self._stop_after_save(control)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.stop_agreed():
            self._stop_after_save(control)
        if state.is_world_process_zero:
            self.enter("saving" if control.should_save else "training", state)

    def on_save(self, args, state, control, **kwargs):
        hold("saving")  # the checkpoint's folder is written; the phase is still "saving" until it is recorded
        if state.is_world_process_zero:
            self.phase, self.phase_progress, self.phase_started_at = "training", None, utc_now_iso()
            self.record_save(args, state)
        if self.stop_agreed():
            if state.is_world_process_zero:
                self.uploads.wait()  # the checkpoint a resume continues from is recorded before the exit
            raise TrainingStopped(f"stopped on request at step {state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.uploads.wait()
        gone = self.reporter.training_ended(
            self.take_points(), self.progress(state, final=True),
            best_step=checkpoint_step(state.best_model_checkpoint), **self.steps_kept(args),
        )
        self.uploads.forget([checkpoint_dir(Path(args.output_dir), step) for step in gone])
        self.last_write = time.monotonic()

    # ---- Several ranks --------------------------------------------------------------------

    def stop_agreed(self) -> bool:
        """One process: a stop asked at any moment; several: the stop the ranks agreed on."""
        return self.agreed_stop if distributed() else self.stop.is_set()

    def agree_across_ranks(self) -> None:
        """Every rank, at every step's end: one all_reduce of (stop, real tokens, processed tokens)."""
        counts = self.token_counts
        local = [float(self.stop.is_set()), counts.real if counts else 0, counts.processed if counts else 0]
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        summed = torch.tensor(local, dtype=torch.float64, device=device)
        dist.all_reduce(summed)
        stop, real, processed = summed.tolist()
        self.agreed_stop = self.agreed_stop or stop > 0
        self.world_tokens = (int(real), int(processed))

    def real_tokens(self) -> int:
        if self.world_tokens is not None:
            return self.world_tokens[0]
        return self.token_counts.real if self.token_counts is not None else 0

    def padding_efficiency(self) -> float | None:
        if self.world_tokens is not None:
            real, processed = self.world_tokens
            return real / processed if processed else None
        return self.token_counts.efficiency if self.token_counts is not None else None

    # ---- Writing ----------------------------------------------------------------------------

    @staticmethod
    def _stop_after_save(control: TrainerControl) -> None:
        control.should_save = True
        control.should_training_stop = True

    def enter(self, phase: str, state: TrainerState) -> None:
        """A new phase begins: written at once."""
        self.phase, self.phase_progress, self.phase_started_at = phase, None, utc_now_iso()
        self.eval_batches = 0
        self.write(state)

    def write(self, state: TrainerState) -> None:
        """Pending metric points and the progress, in one transaction; kept for the next write if
        the database does not answer."""
        points = self.take_points()
        try:
            self.reporter.progress(points, self.progress(state))
        except ReportDeferred:
            self.put_back(points)
        self.last_write = time.monotonic()

    def take_points(self) -> MetricPoints:
        points = [(step, epoch, values) for step, (epoch, values) in sorted(self.pending.items())]
        self.pending.clear()
        return points

    def put_back(self, points: MetricPoints) -> None:
        for step, epoch, values in points:
            later_epoch, later_values = self.pending.get(step, (None, {}))
            self.pending[step] = (later_epoch if later_epoch is not None else epoch, {**values, **later_values})

    def steps_kept(self, args: TrainingArguments) -> dict:
        """What rotation kept. Under save_total_limit the Trainer keeps the newest on this disk,
        which are the job's newest wherever earlier attempts ran; without it, it deletes nothing,
        and checkpoints an earlier attempt left in the store (not on this disk) stay."""
        on_disk = checkpoint_steps_on_disk(args.output_dir)
        self.seen_on_disk |= on_disk | self.saved_steps
        among = self.seen_on_disk if self.uploads.in_background and not args.save_total_limit else None
        return {"steps_on_disk": on_disk, "among": among}

    def record_save(self, args: TrainingArguments, state: TrainerState) -> None:
        """At on_save the folder is complete, best_model_checkpoint is updated and rotation has
        already deleted older folders. With an object store, the checkpoint is recorded once
        uploaded (worker/checkpoint_upload.py); the points and progress go now."""
        step, output_dir = state.global_step, Path(args.output_dir)
        best_step, kept = checkpoint_step(state.best_model_checkpoint), self.steps_kept(args)
        self.seen_on_disk.add(step)
        points, progress = [], None
        if self.uploads.in_background:
            self.write(state)
        else:
            points, progress = self.take_points(), self.progress(state)

        def record(location: str) -> None:
            gone = self.reporter.checkpoint(points, progress, step=step, location=location, best_step=best_step, **kept)
            self.uploads.forget([checkpoint_dir(output_dir, gone_step) for gone_step in gone])

        hold(f"saving-{step}")  # tests: the folder of this step is written, its upload not begun
        self.uploads.submit(checkpoint_dir(output_dir, step), record)
        self.saved_steps.add(step)
        self.last_write = time.monotonic()

    def flush_quietly(self) -> None:
        """Best effort, when training failed: keep the metrics logged before the failure."""
        try:
            self.reporter.metrics(self.take_points())
        except Exception as exc:
            print(f"could not record the last metric points: {exc!r}", file=sys.stderr)

    def progress(self, state: TrainerState, *, final: bool = False) -> dict:
        steps_per_second = tokens_per_second = real_tokens_per_second = eta_seconds = None
        if self.first_step is not None:
            started, first_step, first_tokens = self.first_step
            elapsed = time.monotonic() - started
            steps_done = state.global_step - first_step
            if steps_done > 0 and elapsed > 0:
                steps_per_second = steps_done / elapsed
                tokens_per_second = (state.num_input_tokens_seen - first_tokens) / elapsed
                if self.token_counts is not None:
                    real_tokens_per_second = (self.real_tokens() - self.first_real_tokens) / elapsed
                eta_seconds = max(state.max_steps - state.global_step, 0) / steps_per_second
        if final and state.global_step >= state.max_steps:
            eta_seconds = 0.0
        return {
            "step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": state.epoch,
            "percent": round(100 * state.global_step / state.max_steps, 2) if state.max_steps else None,
            "steps_per_second": steps_per_second,
            "tokens_per_second": tokens_per_second,
            "real_tokens_per_second": real_tokens_per_second,
            # Real tokens / processed tokens (padding included) of this attempt's training batches, all ranks.
            "padding_efficiency": self.padding_efficiency(),
            "eta_seconds": eta_seconds,
            "loss": next((entry["loss"] for entry in reversed(state.log_history) if "loss" in entry), None),
            "attempt": self.reporter.attempt,
            "phase": "saving" if final else self.phase,  # the final model is saved next
            "phase_progress": None if final else self.phase_progress,
            "phase_started_at": self.phase_started_at,
            "updated_at": utc_now_iso(),
        }
