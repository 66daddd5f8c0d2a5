"""Response models of jobs and what hangs off them (runs, events, metrics, checkpoints)."""

from datetime import datetime
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import Path
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, computed_field, field_validator

from jobspec.model import MAX_ID

# Ids beyond BIGINT would overflow the query instead of finding nothing: refused (422) up front.
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="Id of one of your jobs.")]
# Result fields that name a folder of the job's output.
PATH_KEYS = ("final_model_path", "best_checkpoint")
DatasetId = Annotated[int, Path(ge=1, le=MAX_ID, description="Id of one of your datasets.")]


class ORMModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class RunOut(ORMModel):
    attempt: int
    status: str
    reason: str
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    resume_step: int | None
    exit_code: int | None
    error: dict[str, Any] | None


class JobSummaryOut(ORMModel):
    id: int
    name: str | None
    status: str
    queue: str
    dataset_id: int | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: list[RunOut] = Field(validation_alias=AliasChoices("runs", "attempts"))
    sweep_id: int | None = Field(None, description="The sweep this job is a trial of (GET /sweeps/{id}).")
    sweep_trial: int | None = Field(None, description="Its trial number in that sweep, from 0.")

    @field_validator("result")
    @classmethod
    def _no_server_paths(cls, result: dict[str, Any] | None) -> dict[str, Any] | None:
        """Folder names within the job's output folder, never the server's absolute paths."""
        if not result:
            return result
        return {**result, **{key: PurePath(result[key]).name for key in PATH_KEYS if result.get(key)}}

    @computed_field(description="GET this for a tar of the final model (once there is one).")
    @property
    def final_model_download(self) -> str | None:
        return f"/jobs/{self.id}/artifacts/final" if (self.result or {}).get("final_model_path") else None


class JobOut(JobSummaryOut):
    spec: dict[str, Any] = Field(description="The normalized spec, as the worker receives it.")


class JobDetailOut(JobOut):
    """GET /jobs/{id}: the job as read, with where its stream stood at that read (an answer to a
    change would give the position before the change's own event)."""

    stream_position: int = Field(
        validation_alias=AliasChoices("stream_seq", "stream_position"),
        description="The id of the job's latest stream event: send it as Last-Event-ID to "
        "GET /jobs/{id}/stream for only what comes after this answer.")


class JobListItem(JobSummaryOut):
    spec: dict[str, Any] | None = Field(None, description="The normalized spec: only with ?include=spec.")


class ResumedJob(JobOut):
    model_config = ConfigDict(populate_by_name=True)

    warnings: list[str] = Field(default_factory=list, description="E.g. when the resume will not be bit-exact.")


class EventOut(ORMModel):
    id: int
    type: str
    message: str
    data: dict[str, Any] | None
    created_at: datetime
    stream_id: int = Field(0, validation_alias=AliasChoices("seq", "stream_id"),
                           description="Its id in GET /jobs/{id}/stream (compare with the job's stream_position).")

    @field_validator("data")
    @classmethod
    def _no_server_paths(cls, data: dict[str, Any] | None) -> dict[str, Any] | None:
        """An attempt's log by its name (GET /jobs/{id}/logs?attempt=N reads it), a set-aside
        folder relative to the job's output folder."""
        if not data:
            return data
        shown = dict(data)
        for key in ("log", "path"):  # an attempt's log, a checkpoint's folder
            if isinstance(shown.get(key), str):
                shown[key] = PurePath(shown[key]).name
        if isinstance(shown.get("folder"), str):
            folder = PurePath(shown["folder"])
            shown["folder"] = f"{folder.parent.name}/{folder.name}"
        return shown


class MetricPointOut(ORMModel):
    step: int
    epoch: float | None
    name: str
    value: float
    created_at: datetime = Field(serialization_alias="time")


class CheckpointOut(ORMModel):
    job_id: int = Field(exclude=True)
    step: int
    path: str = Field(description="The checkpoint's folder name within the job's output folder.")
    created_at: datetime = Field(serialization_alias="time")
    metrics: dict[str, Any] | None
    is_best: bool
    deleted: bool

    @field_validator("path")
    @classmethod
    def _folder_name(cls, path: str) -> str:
        return PurePath(path).name

    @computed_field(description="GET this for a tar of the checkpoint (while it is not deleted).")
    @property
    def download(self) -> str | None:
        return None if self.deleted else f"/jobs/{self.job_id}/checkpoints/{self.step}/download"


class Warning(BaseModel):
    field: str
    msg: str


class SubmittedJob(JobOut):
    """POST /jobs: the job, with the warnings /jobs/validate would have shown for its spec."""

    warnings: list[Warning] = Field(default_factory=list, description="Advice from the tuning tips, and what only "
                                    "some (or, for a queue without live workers, maybe none) of the queue's "
                                    "workers can run; the job was accepted all the same.")


class ValidationReport(BaseModel):
    valid: bool
    spec: dict[str, Any] | None = Field(description="The normalized spec (when it parses).")
    errors: list[dict[str, Any]] = Field(description="Problems that would make POST /jobs answer 422.")
    warnings: list[Warning] = Field(description="Advice from the tuning tips, and what only some (or, for a "
                                    "queue without live workers, maybe none) of the queue's workers can run; never rejects.")
    estimates: dict[str, Any] | None = Field(
        description="Rows, batch and step counts for the dataset; `memory`: expected peak GPU memory "
        "(weights, trainable parameters, gradients, optimizer state, activations) from the base "
        "model's config.json, or `unavailable` with the reason.")
