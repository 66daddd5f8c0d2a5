"""Typed SQLAlchemy 2.0 models. The schema itself is only ever created by Alembic migrations."""

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, MetaData, String, Text
from sqlalchemy import Index, TypeDecorator, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both backends (SQLite stores them without a zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


# An integer primary key that is also autoincrementing on SQLite (BigInteger alone is not).
IdType = BigInteger().with_variant(Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Tenant(Base):
    """Who owns datasets and jobs; every API key belongs to one."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Dataset(TimestampMixin, Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int]
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class Job(TimestampMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]]
    # Deleting a dataset keeps the finished jobs that used it (their spec still names the id).
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    queue: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    progress: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    # The job's stream: the last number given to one of its events, metric batches or progress
    # (db/sequence.py), and the number of the current progress.
    stream_seq: Mapped[int] = mapped_column(IdType, default=0, server_default="0")
    progress_seq: Mapped[int] = mapped_column(IdType, default=0, server_default="0")
    # What an OpenAI-compatible request asked for beyond the spec: its model name, suffix,
    # metadata and hyperparameters as given ("auto" included). None for native jobs.
    openai: Mapped[dict[str, Any] | None]
    # A trial of a sweep (db/sweep_control.py): the sweep and the trial's number in it. A plain
    # number, like a delivery's job (alembic 0010 says why).
    sweep_id: Mapped[int | None] = mapped_column(IdType, index=True)
    sweep_trial: Mapped[int | None]

    runs: Mapped[list["Run"]] = relationship(
        back_populates="job", order_by="Run.attempt", lazy="selectin"
    )


class Sweep(TimestampMixin, Base):
    """A hyperparameter search: its trials are jobs (Job.sweep_id). `request` is the validated
    request (jobspec/sweep.py); its status changes only through db/sweeps.py, each with an event."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), index=True)
    method: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]]
    queue: Mapped[str] = mapped_column(String(64))
    error: Mapped[dict[str, Any] | None]
    finished_at: Mapped[datetime | None]


class SweepEvent(Base):
    """One thing that happened to a sweep: its state changes, trials started, rung decisions."""

    __tablename__ = "sweep_events"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(TimestampMixin, Base):
    """One attempt at a job: each (re)start gets its own row, worker, heartbeat and outcome."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("job_id", "attempt"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), index=True)
    worker: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None]
    heartbeat_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    exit_code: Mapped[int | None]
    error: Mapped[dict[str, Any] | None]
    # Why this attempt exists: submitted, resumed (by a user) or restarted (after a lost worker).
    reason: Mapped[str] = mapped_column(String(16), default="submitted")
    # The attempt continues from this job's checkpoint-<resume_step> (None: from the start).
    resume_step: Mapped[int | None]
    # When its broker message was last sent; None: committed but not sent yet (db/outbox.py).
    dispatched_at: Mapped[datetime | None]

    job: Mapped[Job] = relationship(back_populates="runs")


class Event(Base):
    """One thing that happened to a job, with a stable `type` (`job.running`, `checkpoint.saved`,
    ...) and a JSON payload: the record the stream and webhooks read."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_job_seq", "job_id", "seq"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]
    seq: Mapped[int] = mapped_column(IdType, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricPoint(Base):
    __tablename__ = "metric_points"
    __table_args__ = (
        UniqueConstraint("job_id", "name", "step"),
        # Pages by the cursor (step, name) > (s, n): an index condition only with both columns.
        Index("ix_metric_points_job_step_name", "job_id", "step", "name"),
        Index("ix_metric_points_job_seq", "job_id", "seq"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(128))
    step: Mapped[int]
    epoch: Mapped[float | None] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    # An upsert renumbers the row: a replaced value is news, the old one is never replayed.
    seq: Mapped[int] = mapped_column(IdType, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricBlock(Base):
    """A summary of one series' points in steps [block * size, block * size + size - 1], size 64 or 8
    (db/metric_blocks.py), rewritten from those points whenever they change: a chart reads these
    instead of the series."""

    __tablename__ = "metric_blocks"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    size: Mapped[int] = mapped_column(primary_key=True)
    block: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int]
    first_step: Mapped[int]
    last_step: Mapped[int]
    # The lowest and the highest value, each at the earliest step that has it.
    min_step: Mapped[int]
    min_value: Mapped[float] = mapped_column(Float)
    max_step: Mapped[int]
    max_value: Mapped[float] = mapped_column(Float)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    step: Mapped[int]
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any] | None]
    is_best: Mapped[bool] = mapped_column(default=False)
    deleted: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(TimestampMixin, Base):
    """Where a tenant wants job events delivered, signed with its secret (Standard Webhooks)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(64))
    # After a rotation that keeps the old secret for a while, deliveries are signed with both.
    previous_secret: Mapped[str | None] = mapped_column(String(64))
    previous_secret_until: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event for one endpoint: the queue of deliveries is this table (db/webhooks.py). The
    payload is fixed when the event is written, so every attempt sends the same bytes and id.
    Job and event are plain numbers: deleting a job leaves its pending notifications."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The head of an (endpoint, job) chain: deliveries of one job to one endpoint go in order.
        Index("ix_webhook_deliveries_chain", "endpoint_id", "job_id", "status"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    job_id: Mapped[int] = mapped_column(IdType)
    event_id: Mapped[int | None] = mapped_column(IdType)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    # pending (to send or retry), succeeded, failed (given up after webhook_retry_for_s).
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    next_attempt_at: Mapped[datetime]
    # When its broker message last went out (None: not sent for the coming attempt), and until
    # when a sender holds it (db/webhooks.py claim_delivery).
    dispatched_at: Mapped[datetime | None]
    leased_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Worker(Base):
    """A worker as it registered itself (worker/registry.py): what it consumes and can run. It
    beats while it runs; one that stopped cleanly has `stopped_at`, one not seen for a heartbeat
    timeout is not live (db/workers.py). The jobs it runs are its running runs (`Run.worker`)."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)  # Celery's hostname, as runs name it
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    queues: Mapped[list[str]] = mapped_column(JSON)
    # [{"index", "name", "memory_bytes", "compute_capability": "8.0", "bf16": bool}]; [] on CPU.
    gpus: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # Its GPU set (worker/placement.py): a job of resources.gpus N needs N of them. On a CPU
    # machine `--gpus 0,1` gives ids that only count (tests), so this is not len(gpus).
    gpu_ids: Mapped[list[str]] = mapped_column(JSON)
    integrations: Mapped[list[str]] = mapped_column(JSON)  # report_to names it can serve
    versions: Mapped[dict[str, Any]]  # torch, transformers, peft, bitsandbytes (None: not installed)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    # An inference server (`traindock serve`, worker/serve.py): where the API sends generation
    # requests. None for a training worker.
    inference_url: Mapped[str | None] = mapped_column(Text)


class Sample(Base):
    """What the model generated for one sample prompt at one evaluation step (and at the end of
    training): a prompt of evaluation.sample_prompts, or a validation row with its reference."""

    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("job_id", "step", "prompt_index"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    step: Mapped[int]
    prompt_index: Mapped[int]
    source: Mapped[str] = mapped_column(String(16))  # "prompt" or "validation"
    prompt: Mapped[Any] = mapped_column(JSON)  # a text or a list of chat messages
    output: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
