"""The training process's one way to the database (after Determined's core context): it reads
what its run is to do, then reports metrics, progress, checkpoints, the result or an error.
worker/train.py and worker/callback.py use nothing else of db/; each report is one short
transaction.

A database that blinks never kills training: progress reports that fail for a transient reason
raise ReportDeferred (the callback keeps the points and sends them with the next report); the
reports training cannot go on without (the assignment, a checkpoint, the end, the result) are
retried with backoff for up to TRAINDOCK_DB_RETRY_S, then raise DatabaseUnavailable."""

import sys
from collections.abc import Callable

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from db.checkpoints import (
    mark_best, mark_deleted_after, mark_deleted_except, record_checkpoint, usable_checkpoint,
)
from db.datasets import get_dataset
from db.engine import session_scope
from db.events import add_event
from db.jobs import get_job, set_progress, set_result
from db.metrics import delete_after, metrics_at_step, record_metric_points
from db.retry import DatabaseUnavailable, is_transient, retrying
from db.runs import get_run, set_run_error
from db.samples import delete_samples_after, record_samples
from db.sweeps import rung_plan
from jobspec.model import JobSpec
from traindock.paths import job_output_dir
from traindock.settings import get_settings

# (step, epoch, {name: value}) of one or more log lines.
MetricPoints = list[tuple[int, float | None, dict[str, float]]]


__all__ = ["DatabaseUnavailable", "ReportDeferred"]


class ReportDeferred(Exception):
    """The database did not answer; nothing was written. Send the same points again later."""


def _reliably(what: str, work: Callable[[], object]):
    return retrying(work, get_settings().db_retry_s, what)


@dataclass(frozen=True)
class Assignment:
    """What a run is to do, as stored."""

    run_id: int
    job_id: int
    attempt: int
    spec: JobSpec
    dataset_location: str | None  # in the store (traindock/storage.py); None: the dataset was deleted
    dataset_sha256: str | None
    dataset_format: str | None
    output_dir: Path
    resume_step: int | None  # this job's checkpoint the attempt continues from
    validation_location: str | None = None  # the evaluation set's dataset (validation_dataset_id)
    validation_format: str | None = None
    init_from: Path | None = None  # the final model of the earlier job this one starts from


def load_assignment(run_id: int) -> Assignment:
    return _reliably("loading the run", lambda: _load_assignment(run_id))


def _load_assignment(run_id: int) -> Assignment:
    with session_scope() as session:
        run = get_run(session, run_id)
        if run is None:
            raise LookupError(f"run {run_id} does not exist")
        job = get_job(session, run.job_id)
        spec = JobSpec.model_validate(job.spec)
        dataset = get_dataset(session, job.dataset_id) if job.dataset_id is not None else None
        validation = get_dataset(session, spec.validation_dataset_id) if spec.validation_dataset_id else None
        earlier = get_job(session, spec.init_from_job_id) if spec.init_from_job_id else None
        return Assignment(
            run_id=run.id,
            job_id=job.id,
            attempt=run.attempt,
            spec=spec,
            dataset_location=dataset.path if dataset else None,
            dataset_sha256=dataset.sha256 if dataset else None,
            dataset_format=dataset.format if dataset else None,
            output_dir=job_output_dir(get_settings().jobs_dir, job.tenant_id, spec.output_dir, job.id),
            resume_step=run.resume_step,
            validation_location=validation.path if validation else None,
            validation_format=validation.format if validation else None,
            init_from=final_model_dir(earlier) if earlier else None,
        )


def final_model_dir(job) -> Path:
    return job_output_dir(get_settings().jobs_dir, job.tenant_id, job.spec.get("output_dir"), job.id) / "final"


def usable_checkpoint_location(job_id: int, step: int | None) -> str | None:
    """An earlier job's checkpoint that a new job starts from (`resume_from_checkpoint`)."""
    def find() -> str | None:
        with session_scope() as session:
            checkpoint = usable_checkpoint(session, job_id, step)
            return checkpoint.path if checkpoint else None

    return _reliably("finding the checkpoint to start from", find)


class Reporter:
    def __init__(self, job_id: int, run_id: int, attempt: int):
        self.job_id = job_id
        self.run_id = run_id
        self.attempt = attempt
        self.sweep: tuple[int | None, str | None, list[int]] | None = None  # db/sweeps.py rung_plan

    def at_rung(self, step: int, logged: dict[str, float]) -> bool:
        """Whether this job is a sweep's trial that just logged its metric at an ASHA rung step."""
        if self.sweep is None:
            try:
                with session_scope() as session:
                    self.sweep = rung_plan(session, self.job_id)
            except Exception as exc:
                if is_transient(exc):
                    return False  # read again at the next log; a rung missed here the periodic check decides
                raise
        _sweep_id, metric, steps = self.sweep
        return step in steps and metric in logged

    def stopped_at_rung(self) -> bool:
        """The sweep's controller decides the rung (the metric points are written): True when it
        stopped this trial. If it cannot decide now, training goes on and the workers' periodic
        check decides (the trial then stops a little later, on the same path)."""
        from db.sweep_control import decide_at_rung  # Optuna: imported by sweeps' trials only

        try:
            return decide_at_rung(self.sweep[0], self.job_id)
        except Exception as exc:
            print(f"the sweep's rung decision was not made here: {exc!r}", file=sys.stderr)
            return False

    def phase(self, name: str) -> None:
        """A phase before training (preparing_data, loading_model) begins: it goes into the
        progress the job already shows (a resumed job keeps its step), so the first seconds of a
        job never look frozen."""
        now = datetime.now(timezone.utc).isoformat()
        with session_scope() as session:
            progress = {"step": 0, **(get_job(session, self.job_id).progress or {})}
            progress.update(phase=name, phase_progress=None, phase_started_at=now, attempt=self.attempt,
                            updated_at=now)
            set_progress(session, self.job_id, progress)

    def progress(self, points: MetricPoints, progress: dict[str, Any]) -> None:
        """Raises ReportDeferred when the database does not answer."""
        try:
            with session_scope() as session:
                record_metric_points(session, self.job_id, self.run_id, points)
                set_progress(session, self.job_id, progress)
        except Exception as exc:
            if is_transient(exc):
                raise ReportDeferred(str(exc)) from exc
            raise

    def metrics(self, points: MetricPoints) -> None:
        def write() -> None:
            with session_scope() as session:
                record_metric_points(session, self.job_id, self.run_id, points)

        _reliably("recording metric points", write)

    def checkpoint(
        self, points: MetricPoints, progress: dict[str, Any] | None, *, step: int, location: str,
        best_step: int | None, steps_on_disk: set[int], among: set[int] | None = None,
    ) -> list[int]:
        """A complete checkpoint folder, in the store at `location`; rotation has already deleted
        older ones (returned: the steps it deleted, see mark_deleted_except)."""
        return _reliably("recording a checkpoint", lambda: self._checkpoint(
            points, progress, step, location, best_step, steps_on_disk, among))

    def _checkpoint(self, points, progress, step, location, best_step, steps_on_disk, among) -> list[int]:
        with session_scope() as session:
            record_metric_points(session, self.job_id, self.run_id, points)
            record_checkpoint(session, self.job_id, self.run_id, step, location,
                              metrics_at_step(session, self.job_id, step))
            gone = mark_deleted_except(session, self.job_id, steps_on_disk, among)
            mark_best(session, self.job_id, best_step)
            if progress is not None:
                set_progress(session, self.job_id, progress)
            return gone

    def training_ended(
        self, points: MetricPoints, progress: dict[str, Any], *, best_step: int | None, steps_on_disk: set[int],
        among: set[int] | None = None,
    ) -> list[int]:
        return _reliably("recording the end of training",
                         lambda: self._training_ended(points, progress, best_step, steps_on_disk, among))

    def _training_ended(self, points, progress, best_step, steps_on_disk, among) -> list[int]:
        with session_scope() as session:
            record_metric_points(session, self.job_id, self.run_id, points)
            # The Trainer may delete checkpoints after the last save (save_total_limit 1).
            gone = mark_deleted_except(session, self.job_id, steps_on_disk, among)
            mark_best(session, self.job_id, best_step)
            set_progress(session, self.job_id, progress)
            return gone

    def timeline_replaced(self, resume_step: int, moved: list[int], folder: Path, steps_on_disk: set[int]) -> None:
        """Resuming from `resume_step`: the later metric points are forgotten, the later
        checkpoints were moved to `folder`."""
        _reliably("replacing the timeline", lambda: self._timeline_replaced(resume_step, moved, folder, steps_on_disk))

    def _timeline_replaced(self, resume_step, moved, folder, steps_on_disk) -> None:
        with session_scope() as session:
            delete_after(session, self.job_id, resume_step)
            delete_samples_after(session, self.job_id, resume_step)
            mark_deleted_after(session, self.job_id, resume_step)
            if moved:
                mark_deleted_except(session, self.job_id, steps_on_disk)
                add_event(session, self.job_id, "checkpoints.superseded",
                          f"checkpoints of steps {', '.join(map(str, moved))} moved to "
                          f"{folder.parent.name}/{folder.name}: this "
                          f"attempt continues from step {resume_step}", run_id=self.run_id,
                          data={"steps": moved, "folder": str(folder)})

    def samples(self, step: int, samples: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """One generation round (worker/samples.py): its outputs and the `samples.generated` event."""
        def write() -> None:
            with session_scope() as session:
                record_samples(session, self.job_id, self.run_id, step, samples, summary)

        _reliably("recording sample generations", write)

    def result(self, result: dict[str, Any]) -> None:
        def write() -> None:
            with session_scope() as session:
                set_result(session, self.job_id, result)

        _reliably("recording the result", write)


def report_error(run_id: int, error: dict[str, Any]) -> None:
    """Written before the process exits with EXIT_FAILED (also when its run could not even be
    loaded); the supervisor turns it into the job's error."""
    def write() -> None:
        with session_scope() as session:
            set_run_error(session, run_id, error)

    _reliably("recording the error", write)
