"""Reports a Trainer's progress, metrics and checkpoints to the database, keyed by global step,
from the main process only (after Determined's DetCallback). Also turns a stop request into a
checkpoint of the current step followed by TrainingStopped.

Writes are batched: metric points wait in memory and go out with a progress update at most about
once a second, and at every evaluation, save and the end of training, each in one short
transaction."""

import math
import sys
import threading
import time
from pathlib import Path

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from db.checkpoints import mark_best, mark_deleted_except, record_checkpoint
from db.engine import session_scope
from db.jobs import set_progress
from db.metrics import metrics_at_step, record_metric_points
from db.models import utcnow
from worker.errors import TrainingStopped

WRITE_INTERVAL_S = 1.0
CHECKPOINT_PREFIX = "checkpoint-"


def checkpoint_step(path: str | None) -> int | None:
    if not path:
        return None
    name = Path(path).name
    return int(name[len(CHECKPOINT_PREFIX):]) if name.startswith(CHECKPOINT_PREFIX) else None


def checkpoint_steps_on_disk(output_dir: str) -> set[int]:
    folder = Path(output_dir)
    if not folder.is_dir():
        return set()
    return {
        step for path in folder.glob(f"{CHECKPOINT_PREFIX}*")
        if path.is_dir() and (step := checkpoint_step(str(path))) is not None
    }


def numeric_values(logs: dict) -> dict[str, float]:
    """The numbers of a log line; NaN and infinities are left out (SQLite cannot store NaN, and
    neither is valid JSON for the API)."""
    return {
        name: float(value) for name, value in logs.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


class ReportingCallback(TrainerCallback):
    def __init__(self, job_id: int, run_id: int, attempt: int, stop: threading.Event):
        self.job_id = job_id
        self.run_id = run_id
        self.attempt = attempt
        self.stop = stop
        self.pending: dict[int, tuple[float | None, dict[str, float]]] = {}  # step -> (epoch, values)
        self.last_write = -math.inf
        # Rates are measured from the end of this run's first step, so start-up and a resumed
        # run's earlier steps do not count; evaluations and saves after it do (wall time).
        self.first_step: tuple[float, int, int] | None = None  # (time, global step, tokens seen)
        self.token_counts = None  # the trainer's TokenCounts, when it counts real and padded tokens
        self.first_real_tokens = 0

    # ---- Trainer events -------------------------------------------------------------------

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.stop.is_set():
            # An evaluation now would delay the stop and, with save_strategy "best", could cancel
            # the save; the checkpoint of this step is what a resume continues from.
            control.should_evaluate = False
            self._stop_after_save(control)
        if not state.is_world_process_zero:
            return
        now = time.monotonic()
        if self.first_step is None:
            self.first_step = (now, state.global_step, state.num_input_tokens_seen)
            self.first_real_tokens = self.token_counts.real if self.token_counts is not None else 0
        if now - self.last_write >= WRITE_INTERVAL_S:
            self.write(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        epoch, values = self.pending.get(state.global_step, (None, {}))
        values.update(numeric_values(logs))
        self.pending[state.global_step] = (state.epoch if state.epoch is not None else epoch, values)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.stop.is_set():
            self._stop_after_save(control)
        if state.is_world_process_zero:
            self.write(state)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.record_save(args, state)
        if self.stop.is_set():
            raise TrainingStopped(f"stopped on request at step {state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        with session_scope() as session:
            self.flush_metrics(session)
            # The Trainer may delete checkpoints after the last save (save_total_limit 1).
            mark_deleted_except(session, self.job_id, checkpoint_steps_on_disk(args.output_dir))
            mark_best(session, self.job_id, checkpoint_step(state.best_model_checkpoint))
            set_progress(session, self.job_id, self.progress(state, final=True))
        self.last_write = time.monotonic()

    # ---- Writing ----------------------------------------------------------------------------

    @staticmethod
    def _stop_after_save(control: TrainerControl) -> None:
        control.should_save = True
        control.should_training_stop = True

    def write(self, state: TrainerState) -> None:
        """Pending metric points and the progress, in one transaction."""
        with session_scope() as session:
            self.flush_metrics(session)
            set_progress(session, self.job_id, self.progress(state))
        self.last_write = time.monotonic()

    def flush_metrics(self, session) -> None:
        points = [(step, epoch, values) for step, (epoch, values) in sorted(self.pending.items())]
        record_metric_points(session, self.job_id, self.run_id, points)
        self.pending.clear()

    def record_save(self, args: TrainingArguments, state: TrainerState) -> None:
        """At on_save the folder is complete, best_model_checkpoint is updated and rotation has
        already deleted older folders."""
        step = state.global_step
        path = str(Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{step}")
        with session_scope() as session:
            self.flush_metrics(session)
            record_checkpoint(session, self.job_id, self.run_id, step, path, metrics_at_step(session, self.job_id, step))
            mark_deleted_except(session, self.job_id, checkpoint_steps_on_disk(args.output_dir))
            mark_best(session, self.job_id, checkpoint_step(state.best_model_checkpoint))
            set_progress(session, self.job_id, self.progress(state))
        self.last_write = time.monotonic()

    def flush_quietly(self) -> None:
        """Best effort, when training failed: keep the metrics logged before the failure."""
        try:
            with session_scope() as session:
                self.flush_metrics(session)
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
                    real_tokens_per_second = (self.token_counts.real - self.first_real_tokens) / elapsed
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
            # Real tokens / processed tokens (padding included) of this attempt's training batches.
            "padding_efficiency": self.token_counts.efficiency if self.token_counts is not None else None,
            "eta_seconds": eta_seconds,
            "loss": next((entry["loss"] for entry in reversed(state.log_history) if "loss" in entry), None),
            "attempt": self.attempt,
            "updated_at": utcnow().isoformat(),
        }
